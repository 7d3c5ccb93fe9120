// placeholder: filled in by issue 4 (resample family, cuda backend)
#pragma once
