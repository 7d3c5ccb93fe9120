// placeholder: filled in by issue 5 (conv_grad, cuda backend)
#pragma once
