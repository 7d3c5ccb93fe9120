// placeholder: filled in by issue 5 (pooling_grad, cuda backend)
#pragma once
