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

/* config.txt: a comment, then one `key = value` line per recorded setting, in the table's
 * order (malloc'd; NULL when out of memory). It reads as a --config file. */
char *ct_train_record(const ct_train_facts *f);

/* A record file (config.txt), NUL-terminated and malloc'd; NULL when it cannot be read whole
 * (missing, unreadable, over 64 KiB). */
char *ct_train_record_read(const char *path);

/* A record (config.txt, or the copy in a checkpoint; today's or cutune 0.2's form) applied to
 * `c` line by line through the settings' setters; `c` keeps the strings (ct_train_config_new)
 * or `text` must outlive it. The line `# data_subset` (a fold of a k-fold run) is applied only
 * `with_subset`. *facts, when given, gets what the record says the run resolved (its
 * default_preprocess is kept). Errors name `origin` and the line's setting. */
ct_status ct_train_config_read_record(ct_train_config *c, const char *text, bool with_subset,
                                      const char *origin, ct_train_facts *facts);

/* Whether a run recorded as `saved` may continue with the settings recorded as `now`: every
 * line must agree (a line present on one side only differs too). CT_EINVAL naming the first
 * line that differs: "it has 'lr = 0.01', now 'lr = 0.02' (only --epochs may change)". A 0.2
 * record is read and written again first; `default_preprocess` is the data's, which such a
 * record left out. */
ct_status ct_train_record_compare(const char *saved, const char *now,
                                  ct_preprocess_mode default_preprocess);

/* The table's rows, for the record (settings.c): how many; a row's config.txt key (NULL: not
 * recorded); its line's value for a run (false: no line); whether it is a switch. */
int ct_settings_rows(void);
const char *ct_setting_key(int row);
bool ct_setting_record(int row, const ct_train_facts *f, char *buf, size_t cap);
bool ct_setting_is_switch(int row);

/* The setting whose config.txt key is `key`, set from text as its flag would be. */
ct_status ct_train_config_set_key(ct_train_config *c, const char *key, const char *value);

#endif
