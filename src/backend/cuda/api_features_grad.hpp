// placeholder: filled in by issue 5 (features_grad, cuda backend)
#pragma once
