/* Streaming batches from a loader into a model's input, double buffered: `cutune train` runs
 * its training batches and its validation batches (without augmentation) this way, and
 * `cutune evaluate` and `cutune predict` theirs.
 *
 * The loader fills batch buffers in the backend's host memory (pinned on CUDA, so copies are
 * real asynchronous DMA). Each batch is copied into one of CT_STAGE_SLOTS backend buffers on the
 * backend's copy stream while the previous batch is computed; the step then turns the slot into
 * the model's input:
 *
 *   device path  the loader only decodes (CT_OUTPUT_RAW: uint8 pixels, or floats for in-memory
 *                data); the backend's augment_standardize op draws the augmentation for
 *                (seed, epoch, sample) and standardises, in one pass on the device. Four times
 *                fewer bytes cross the bus than float pixels, and the CPU threads only decode.
 *   loader path  the loader threads augment and standardise (CT_OUTPUT_FLOAT); the slot holds
 *                the finished floats and a device-side copy moves them into the input.
 *
 * Both paths compute every image with ct_augment_standardize_image's float operations, so on the
 * CPU backend they train bit-identically. A step with prefetch:
 *
 *   ct_stream_put(s, first, &slot);                  // once, before the loop
 *   loop: ct_stream_input(s, slot, aug);             // queue the input
 *         ct_model_forward(...); loss; backward;     // queue the step
 *         ct_loader_next(l, &next); ct_stream_put(s, next, &next_slot);  // overlaps the step
 *         ... wait for the step's results ...
 *         ct_stream_done(s, l, slot);                // the batch goes back to the loader
 *         slot = next_slot;
 */
#ifndef CUTUNE_TRAIN_STREAM_H
#define CUTUNE_TRAIN_STREAM_H

#include <stdbool.h>

#include "data/augment.h"
#include "core/backend.h"
#include "data/data.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_stream ct_stream;

/* Where augmentation runs, from --augment-on: "auto" or NULL (the device path on every backend
 * but the CPU), "device" or "loader". */
ct_status ct_stream_parse_where(const char *augment_on, const ct_backend *be, bool *on_device);

/* Allocates the loader's host buffers and the staging slots for batches of `lc->batch_size`
 * samples of `ds` (shape from `lc->image` for image folders), and points `lc` at them (buffers,
 * n_buffers, output kind): create the training loader from `lc` afterwards, and free it before
 * the stream. CT_ESHAPE when the batches do not fit the model's input. */
ct_status ct_stream_init(ct_stream **out, ct_model *m, const ct_dataset *ds, bool on_device,
                         ct_loader_config *lc);
bool ct_stream_on_device(const ct_stream *s);
/* Queues the copy of a loader batch into the next slot (*slot). */
ct_status ct_stream_put(ct_stream *s, const ct_batch *b, int *slot);
/* The next batch of `l` (*b; NULL at the end of the epoch, *slot then -1), its copy queued with
 * ct_stream_put; when that fails the batch goes back to the loader. */
ct_status ct_stream_next(ct_stream *s, ct_loader *l, const ct_batch **b, int *slot);
/* Queues the model's input from the slot: augmentation (`aug`, may be NULL) and standardisation
 * on the device path, a copy on the loader path; then the auxiliary values. */
ct_status ct_stream_input(ct_stream *s, int slot, const ct_augment_config *aug);
/* One batch of a pass: compute the batch `b` staged in `slot`, and at the moment that overlaps
 * best fetch the next one with ct_stream_next(s, l, next, next_slot) (left NULL / -1 at the
 * end of the pass). */
typedef ct_status (*ct_stream_step)(void *user, const ct_batch *b, int slot,
                                    const ct_batch **next, int *next_slot);
/* Runs `step` over one pass of `l` (ct_loader_begin_epoch(l, epoch) first). Every batch goes
 * back to the loader, on failure too, and a failure keeps the first error's message. */
ct_status ct_stream_pass(ct_stream *s, ct_loader *l, uint32_t epoch, ct_stream_step step,
                         void *user);
/* Waits for the slot's copy and gives its batch back to `l`. A slot without a batch (or -1) is
 * a no-op. */
ct_status ct_stream_done(ct_stream *s, ct_loader *l, int slot);
/* Frees the buffers (after the loader that fills them). NULL is a no-op. */
void ct_stream_free(ct_stream *s);

#ifdef __cplusplus
}
#endif
#endif
