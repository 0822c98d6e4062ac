/* --resume: a run continues exactly where its checkpoint left it.
 *
 * First the settings: every line of config.txt must be what the flags give now (only --epochs
 * may change), so a changed optimizer, head or freezing is reported as the flag it is, before
 * anything is touched. Then the log says how many epochs finished, hence which freezing the
 * checkpoint was saved under (warm-up or target; the other is tried if the checkpoint
 * disagrees); the checkpoint restores the weights, the optimizer and the loop's position, and
 * its own copy of the settings is checked again; the log is rewritten with exactly the epochs
 * the checkpoint has seen; and the callbacks take their state back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"
#include "settings.h"

static ct_status check_settings(const fit_run *r) {
    char *started = ct_train_record_read(r->path.config);
    if (started == NULL) return CT_OK; /* the checkpoint's own copy is checked below */
    ct_status s = ct_train_record_compare(started, r->config_text, fit_default_preprocess(r));
    free(started);
    return s;
}

/* The checkpoint, loaded under the freezing of epoch `rows` (warm-up or target), or else under
 * the other one. */
static ct_status load_checkpoint(fit_run *r, int rows) {
    ct_status s = fit_apply_freezing(r, rows);
    if (s == CT_OK) s = ct_checkpoint_load(r->m, r->path.ckpt, &r->st);
    if (s == CT_OK || r->c->warmup_epochs <= 0) return s;
    r->compiled = false;
    r->freeze_now[0] = '\0';
    const char *warmup = ct_strategy_freeze_to_for(r->c->backbone, CT_STRATEGY_HEAD);
    const char *other = strcmp(fit_freeze_at(r, rows), warmup) == 0 ? r->freeze_target : warmup;
    if (ct_model_freeze_to(r->m, other) != CT_OK ||
        ct_model_compile(r->m, &r->c->optimizer) != CT_OK)
        return s;
    snprintf(r->freeze_now, sizeof r->freeze_now, "%s", other);
    r->compiled = true;
    return ct_checkpoint_load(r->m, r->path.ckpt, &r->st);
}

/* log.csv again, with the epochs the checkpoint has seen. */
static ct_status rewrite_log(fit_run *r, int rows) {
    if (r->st.epoch > rows)
        return ct_error(CT_EFORMAT, "%s has %d epochs but the checkpoint is at epoch %lld",
                        r->path.log, rows, (long long)r->st.epoch);
    const int nk = fit_n_log_keys(r);
    ct_status s = ct_csv_log_open(&r->log, r->path.log, fit_log_keys, nk, false);
    for (int e = 0; s == CT_OK && e < r->st.epoch; e++) {
        double v[FIT_KEYS];
        for (int i = 0; i < nk; i++) v[i] = r->history[(size_t)e * FIT_KEYS + i];
        s = ct_csv_log_row(&r->log, e, v);
    }
    return s;
}

ct_status fit_resume(fit_run *r) {
    ct_status s = check_settings(r);
    if (s != CT_OK) return s;
    int rows = 0;
    s = ct_csv_log_read(r->path.log, fit_log_keys, fit_n_log_keys(r), FIT_KEYS, r->history,
                        r->c->epochs + 1000, &rows);
    if (s == CT_OK) s = load_checkpoint(r, rows);
    if (s != CT_OK) return s;
    if (r->st.config == NULL)
        return ct_error(CT_EFORMAT, "%s: the checkpoint has no run settings", r->path.ckpt);
    s = ct_train_record_compare(r->st.config, r->config_text, fit_default_preprocess(r));
    free(r->st.config);
    r->st.config = NULL;
    if (s == CT_OK) s = rewrite_log(r, rows);
    if (s != CT_OK) return s;
    fit_callbacks_load(&r->cb, &r->st);
    if (r->c->verbose > 0)
        printf("resuming %s at epoch %lld, batch %lld (step %lld)\n", r->c->out_dir,
               (long long)r->st.epoch + 1, (long long)r->st.batch_in_epoch + 1,
               (long long)r->st.step + 1);
    return CT_OK;
}
