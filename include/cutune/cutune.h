/* cutune: fine-tune an ImageNet VGG16 or VGG19 on small image datasets, in C, on NVIDIA GPUs
 * (cuDNN + cuBLAS) or on the CPU, with Keras's words and defaults.
 *
 * The whole public API: status codes and messages (status.h), datasets (data.h), models built,
 * loaded, saved and predicting (model.h), training, evaluation, prediction and advice
 * (train.h), what a weights file holds (weights.h) and the CUDA devices (cuda.h). Link with
 * `pkg-config --cflags --libs cutune` or CMake's find_package(cutune) and cutune::cutune. */
#ifndef CUTUNE_CUTUNE_H
#define CUTUNE_CUTUNE_H

#include "cutune/cuda.h"
#include "cutune/data.h"
#include "cutune/model.h"
#include "cutune/status.h"
#include "cutune/train.h"
#include "cutune/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "0.2.0". */
CT_API const char *ct_version(void);

#ifdef __cplusplus
}
#endif
#endif
