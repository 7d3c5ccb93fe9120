// placeholder: filled in by issue 4 (rows family, cuda backend)
#pragma once
