/* A run's record of its settings (config.txt) and the --resume comparison, from the settings
 * table (settings_table.h, settings.c). The setters and the help are public (run.h). */
#ifndef CUTUNE_TRAIN_SETTINGS_H
#define CUTUNE_TRAIN_SETTINGS_H

#include "train/run.h"
#include "settings_table.h"

/* What a run resolved from its settings and its data, which config.txt records beside them. */
typedef struct ct_train_facts {
    const ct_train_config *c;
    int input;                      /* the input size */
    const char *head;               /* the head spec chosen */
    const char *freeze_target;      /* the layer --freeze-to or --strategy freezes to ("") */
    ct_class_mode class_mode;       /* as the head reads the labels */
    ct_preprocess_mode default_preprocess; /* the data's own: caffe for folders, none iceberg */
} ct_train_facts;

/* config.txt: one `key = value` line per recorded setting, in the table's order (malloc'd;
 * NULL when out of memory). */
char *ct_train_record(const ct_train_facts *f);

/* Whether a run recorded as `saved` may continue with the settings recorded as `now`: every
 * line must agree (a line present on one side only differs too). CT_EINVAL naming the first
 * line that differs: "it has 'lr = 0.01', now 'lr = 0.02' (only --epochs may change)". */
ct_status ct_train_record_compare(const char *saved, const char *now);

#endif
