// placeholder: filled in by issue 4 (sets family, cuda backend)
#pragma once
