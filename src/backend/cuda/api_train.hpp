// placeholder: filled in by issue 5 (train, cuda backend)
#pragma once
