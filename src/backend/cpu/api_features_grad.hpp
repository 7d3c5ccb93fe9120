// placeholder: filled in by issue 5 (features_grad, cpu backend)
#pragma once
