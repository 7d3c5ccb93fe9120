// placeholder: filled in by issue 5 (train, cpu backend)
#pragma once
