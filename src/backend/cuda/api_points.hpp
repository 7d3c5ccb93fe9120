// placeholder: filled in by issue 4 (points family, cuda backend)
#pragma once
