/* Status codes, their texts, and the per-thread detail message that says which file, item and
 * reason a failure was about. */
#include "cutune/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_text[] = {
#define CT_STATUS_TEXT(name, text) text,
    CT_STATUS_MAP(CT_STATUS_TEXT)
#undef CT_STATUS_TEXT
};

static const char *const status_names[] = {
#define CT_STATUS_NAME(name, text) #name,
    CT_STATUS_MAP(CT_STATUS_NAME)
#undef CT_STATUS_NAME
};

static _Thread_local char last_message[1024];
static _Thread_local ct_status last_status;

const char *ct_strerror(ct_status s) {
    if ((unsigned)s >= CT_STATUS_COUNT) return "unknown status";
    return status_text[s];
}

const char *ct_status_name(ct_status s) {
    if ((unsigned)s >= CT_STATUS_COUNT) return "CT_UNKNOWN";
    return status_names[s];
}

const char *ct_last_error(void) {
    if (last_message[0] != '\0') return last_message;
    return ct_strerror(last_status);
}

ct_status ct_error(ct_status s, const char *fmt, ...) {
    /* Formatted into a copy first: callers wrap the previous message with
     * ct_error(s, "...: %s", ct_last_error()), whose argument is last_message itself. */
    char msg[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_message, msg, sizeof msg);
    last_status = s;
    return s;
}

void ct_error_clear(void) {
    last_message[0] = '\0';
    last_status = CT_OK;
}
