/* Choosing how much of the backbone to train. */
#include "fit_internal.h"

ct_status ct_fit_auto_strategy(fit_run *r, ct_strategy *out) {
    /* Placeholder until the measured probe lands: the seed table's size axis only. */
    *out = ct_dataset_count(r->train) < 2000 ? CT_STRATEGY_HEAD : CT_STRATEGY_TOP;
    return CT_OK;
}
