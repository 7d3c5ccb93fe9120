// placeholder: filled in by issue 4 (sets family, cpu backend)
#pragma once
