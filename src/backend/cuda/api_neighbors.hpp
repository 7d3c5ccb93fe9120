// placeholder: filled in by issue 4 (neighbors family, cuda backend)
#pragma once
