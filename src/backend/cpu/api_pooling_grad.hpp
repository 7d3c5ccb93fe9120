// placeholder: filled in by issue 5 (pooling_grad, cpu backend)
#pragma once
