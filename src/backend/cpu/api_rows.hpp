// placeholder: filled in by issue 4 (rows family, cpu backend)
#pragma once
