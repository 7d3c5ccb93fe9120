// placeholder: filled in by issue 4 (neighbors family, cpu backend)
#pragma once
