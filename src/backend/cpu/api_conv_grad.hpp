// placeholder: filled in by issue 5 (conv_grad, cpu backend)
#pragma once
