// placeholder: filled in by issue 4 (resample family, cpu backend)
#pragma once
