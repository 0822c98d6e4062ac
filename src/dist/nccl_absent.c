/* The NCCL entry points of a build without NCCL (or without CUDA): each says so. */
#include "dist/comm.h"

static ct_status no_nccl(void) {
    return ct_error(CT_EUNSUPPORTED, "this cutune was built without NCCL, so its GPU ranks cannot "
                    "sum their gradients: install NCCL (libnccl-dev, or the CUDA toolkit's) and "
                    "rebuild");
}

ct_status ct_nccl_unique_id(uint8_t id[CT_NCCL_ID_BYTES]) {
    (void)id;
    return no_nccl();
}

ct_status ct_comm_nccl_open(ct_comm *c, ct_backend *be, const uint8_t id[CT_NCCL_ID_BYTES]) {
    (void)c;
    (void)be;
    (void)id;
    return no_nccl();
}
