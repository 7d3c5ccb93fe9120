// placeholder: filled in by issue 4 (points family, cpu backend)
#pragma once
