// placeholder: filled in by issue 4
#pragma once
