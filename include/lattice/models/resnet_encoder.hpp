// placeholder: filled in by issue 5
#pragma once
