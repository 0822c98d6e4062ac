/* Keras's model.layers order for a cutune model, computed the way Keras's functional graph
 * (keras/src/ops/function.py, map_graph) computes it for the model `cutune export-keras`
 * prints: every node's depth is the longest path from it to the output; nodes are sorted by
 * depth, deepest first, and ties go by the order in which a depth-first walk from the output,
 * visiting each layer's inputs in call order, first reached them. Keras's load_weights pairs
 * layers by this order, so the writer lists layers in it and by-order loading follows it.
 *
 * For the iceberg head this gives: input_image, block1_conv1 ... block5_pool, input_aux,
 * global_max_pooling2d, dense (the aux branch), concatenate, fc2, ... as real Keras does. */
#include <stdlib.h>
#include <string.h>

#include "../model/backbone.h"
#include "io.h"

typedef struct walk {
    ct_model *m;
    int n;       /* layers; node n is the image input, n + 1 the aux input */
    int *index;  /* pre-order index, -1 unvisited */
    int counter;
} walk;

static int node_of_src(int n, int src) {
    return src == CT_SRC_IMAGE ? n : src == CT_SRC_AUX ? n + 1 : src;
}

static void visit(walk *w, int node) {
    if (w->index[node] >= 0) return;
    w->index[node] = w->counter++;
    if (node >= w->n) return; /* an input */
    const ct_layer *l = ct_model_layer(w->m, node);
    visit(w, node_of_src(w->n, l->src));
    if (l->kind == CT_LAYER_CONCAT && l->src2 >= 0) visit(w, l->src2);
}

static const int *sort_depth, *sort_index;

static int by_depth_then_index(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_depth[x] != sort_depth[y]) return sort_depth[x] > sort_depth[y] ? -1 : 1;
    return sort_index[x] < sort_index[y] ? -1 : sort_index[x] > sort_index[y];
}

int ct__keras_order(ct_model *m, int *nodes) {
    const int n = ct_model_num_layers(m);
    int *depth = malloc((size_t)(n + 2) * sizeof *depth);
    int *index = malloc((size_t)(n + 2) * sizeof *index);
    int *ids = malloc((size_t)(n + 2) * sizeof *ids);
    if (depth == NULL || index == NULL || ids == NULL) {
        free(depth);
        free(index);
        free(ids);
        return -1;
    }
    for (int i = 0; i < n + 2; i++) depth[i] = index[i] = -1;
    /* Layers are stored in a topological order (a source always precedes its user), so one
     * backward sweep gives every node its longest distance to the output. */
    depth[n - 1] = 0;
    for (int i = n - 1; i >= 0; i--) {
        if (depth[i] < 0) continue;
        const ct_layer *l = ct_model_layer(m, i);
        int p = node_of_src(n, l->src);
        if (depth[p] < depth[i] + 1) depth[p] = depth[i] + 1;
        if (l->kind == CT_LAYER_CONCAT && l->src2 >= 0 && depth[l->src2] < depth[i] + 1)
            depth[l->src2] = depth[i] + 1;
    }
    walk w = {m, n, index, 0};
    visit(&w, n - 1);
    int count = 0;
    for (int i = 0; i < n + 2; i++)
        if (depth[i] >= 0) ids[count++] = i;
    sort_depth = depth;
    sort_index = index;
    qsort(ids, (size_t)count, sizeof *ids, by_depth_then_index);
    for (int i = 0; i < count; i++)
        nodes[i] = ids[i] == n ? CT__NODE_IMAGE : ids[i] == n + 1 ? CT__NODE_AUX : ids[i];
    free(depth);
    free(index);
    free(ids);
    return count;
}

bool ct__is_backbone_conv(ct_model *m, int i) {
    const ct_layer *l = ct_model_layer(m, i);
    return l != NULL && i < ct_model_backbone(m)->n_layers && l->kind == CT_LAYER_CONV;
}
