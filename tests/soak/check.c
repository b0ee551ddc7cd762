/*
 * The checks: the ack file (every acknowledgement the API gave, over every cycle so far)
 * against the log, read with SQLite directly and read-only, so that what sagalane believes
 * about its own log plays no part.
 *
 * The model is rebuilt incrementally from the ack file; each check runs over all of it, so a
 * promise broken in one cycle is still caught when its consequence only shows in a later one
 * (an id handed out again, a cancelled job rebuilt and run).
 */
#include "soak.h"

#include <sqlite3.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void *xrealloc(void *p, size_t size) {
    p = realloc(p, size);
    if (!p) soak_die("out of memory");
    return p;
}
static char *xstrdup(const char *s) {
    char *copy = strdup(s);
    if (!copy) soak_die("out of memory");
    return copy;
}

/* Appends to a growing array: `count` and `capacity` beside `items`. */
#define GROW(items, count, capacity)                                                                \
    do {                                                                                           \
        if ((count) == (capacity)) {                                                               \
            (capacity) = (capacity) ? (capacity) * 2 : 64;                                         \
            (items) = xrealloc((items), (capacity) * sizeof *(items));                             \
        }                                                                                          \
    } while (0)

/* ---- The string map ------------------------------------------------------------------------ */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void strmap_grow(strmap *map) {
    strmap bigger = {0};
    bigger.capacity = map->capacity ? map->capacity * 2 : 1024;
    bigger.keys = calloc(bigger.capacity, sizeof *bigger.keys);
    bigger.values = calloc(bigger.capacity, sizeof *bigger.values);
    if (!bigger.keys || !bigger.values) soak_die("out of memory");
    for (size_t i = 0; i < map->capacity; i++) {
        if (!map->keys[i]) continue;
        size_t at = hash_str(map->keys[i]) & (bigger.capacity - 1);
        while (bigger.keys[at]) at = (at + 1) & (bigger.capacity - 1);
        bigger.keys[at] = map->keys[i];
        bigger.values[at] = map->values[i];
        bigger.count++;
    }
    free(map->keys);
    free(map->values);
    *map = bigger;
}

size_t *strmap_slot(strmap *map, const char *key, int create) {
    if (create && (map->count + 1) * 2 > map->capacity) strmap_grow(map);
    if (map->capacity == 0) return NULL;
    size_t at = hash_str(key) & (map->capacity - 1);
    while (map->keys[at]) {
        if (strcmp(map->keys[at], key) == 0) return &map->values[at];
        at = (at + 1) & (map->capacity - 1);
    }
    if (!create) return NULL;
    map->keys[at] = xstrdup(key);
    map->values[at] = 0;
    map->count++;
    return &map->values[at];
}

int strmap_get(const strmap *map, const char *key, size_t *value) {
    size_t *slot = strmap_slot((strmap *)map, key, 0);
    if (slot) *value = *slot;
    return slot != NULL;
}

void strmap_free(strmap *map) {
    for (size_t i = 0; i < map->capacity; i++) free(map->keys[i]);
    free(map->keys);
    free(map->values);
    memset(map, 0, sizeof *map);
}

/* ---- Violations ----------------------------------------------------------------------------- */

static const char *const violation_names[V_COUNT] = {
    [V_LOG_INTEGRITY] = "log-integrity",
    [V_SAGA_ID_REUSED] = "saga-id-reused",
    [V_SAGA_MISSING] = "saga-row-missing",
    [V_SAGA_FOREIGN] = "saga-row-foreign",
    [V_SAGA_END_MISMATCH] = "saga-end-mismatch",
    [V_SAGA_END_TWICE] = "saga-end-twice",
    [V_SAGA_CANCEL_LOST] = "saga-cancel-lost",
    [V_SAGA_END_REWRITTEN] = "saga-end-rewritten",
    [V_SAGA_NEVER_ENDED] = "saga-never-ended",
    [V_JOB_SUBMIT_TWICE] = "job-submit-twice",
    [V_JOB_MISSING] = "job-row-missing",
    [V_JOB_CANCEL_RAN] = "job-cancel-ran",
    [V_JOB_CANCEL_ROW] = "job-cancel-not-durable",
    [V_JOB_RAN_TWICE] = "job-ran-too-often",
    [V_JOB_END_MISMATCH] = "job-end-mismatch",
    [V_JOB_END_TWICE] = "job-end-twice",
    [V_JOB_NEVER_ENDED] = "job-never-ended",
    [V_STEP_NOT_DURABLE] = "step-not-durable",
    [V_STEP_KEY_CONFLICT] = "step-key-conflict",
    [V_STEP_TWO_KEYS] = "step-two-keys",
    [V_STEP_ORDER] = "step-out-of-order",
    [V_UNDO_UNSUCCEEDED] = "undo-of-unsucceeded-step",
    [V_UNDO_ORDER] = "undo-out-of-order",
    [V_UNDO_INCOMPLETE] = "undo-incomplete",
    [V_TERMINAL_COUNT] = "terminal-event-count",
    [V_DETERMINISM] = "determinism-error",
    [V_CHILD_NOT_KILLED] = "child-not-killed",
    [V_CLEAN_RUN_FAILED] = "clean-run-failed",
};

const char *violation_name(violation_kind kind) { return kind < V_COUNT ? violation_names[kind] : "unknown"; }

void violations_add(violation_list *list, violation_kind kind, const char *subject, const size_t *lines,
                    int line_count, const char *fmt, ...) {
    GROW(list->items, list->count, list->capacity);
    violation *v = &list->items[list->count++];
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->subject = xstrdup(subject);
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&v->detail, fmt, ap) < 0) soak_die("out of memory");
    va_end(ap);
    for (int i = 0; i < line_count && v->line_count < VIOLATION_MAX_LINES; i++)
        if (lines[i]) v->lines[v->line_count++] = lines[i];
}

void violations_clear(violation_list *list) {
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i].subject);
        free(list->items[i].detail);
    }
    list->count = 0;
}

/* ---- The model of the ack file -------------------------------------------------------------- */

typedef struct saga_ack {
    uint64_t id;
    int cycle;
    size_t start_line; /* 0: known only from a later line of its cycle (its start ack was lost) */
    char *nonce;
    size_t end_lines[2];
    size_t end_count;
    char end_states[2][16]; /* each saga-end line's state */
    char *end_payload;      /* the first one's payload */
    size_t cancel_line;
} saga_ack;

#define JOB_MAX_STARTS 8
/* The steps a saga of many steps may have (the child's MULTI_STEPS_MAX, and room). */
#define MULTI_K_MAX 16

typedef struct job_ack {
    char *id;
    size_t submit_lines[2];
    size_t submit_count;
    int idempotent; /* from job-submit; -1 unknown */
    size_t cancel_line;
    size_t start_lines[JOB_MAX_STARTS];
    int start_attempts[JOB_MAX_STARTS];
    size_t start_count;
    size_t fail_lines[JOB_MAX_STARTS]; /* job-fail of each start's attempt, 0 if none */
    size_t end_lines[2];
    size_t end_count;
    char end_states[2][16];
    size_t rebuilt_line;
} job_ack;

/* What the targets of a saga of many steps got ("dispatch" lines) and what the host answered
   ("answer" lines), in the order of the ack file. */
typedef struct dispatch_ack {
    size_t line;
    uint32_t step;
    int undo;        /* 0: a step; 1: a compensation */
    int k;           /* the step it does or undoes, from its command */
    int compensates; /* what the runtime injected into a compensation's command */
    char target[16];
    char fate[8];
} dispatch_ack;

typedef struct answer_ack {
    size_t line;
    uint32_t step;
    int ok;
} answer_ack;

typedef struct multi_ack {
    uint64_t id;
    dispatch_ack *dispatches;
    size_t dispatch_count, dispatch_capacity;
    answer_ack *answers;
    size_t answer_count, answer_capacity;
} multi_ack;

typedef struct cycle_info {
    int phase;        /* 0 nothing, 1 open-ok, 2 start-ok, 3 lane-ok */
    int64_t kill_ms;  /* -1: not killed (the clean run) */
    char trigger[48]; /* "after-job-cancel-ok-3" when an ack line fired the kill */
    size_t last_line; /* its last line so far */
    char mode[8];
} cycle_info;

struct ack_model {
    char *pending;        /* a line read without its newline */
    off_t offset;         /* how far the file was read */
    char **lines;
    int *line_cycles;     /* the cycle each line belongs to */
    size_t line_count, line_capacity;
    int cycle;            /* the cycle the lines read last belong to */
    cycle_info *cycles;   /* indexed by cycle number */
    size_t cycle_capacity;

    saga_ack *sagas;
    size_t saga_count, saga_capacity;
    strmap saga_by_cycle_id; /* "cycle:id" -> the latest saga_ack with that id in that cycle */
    strmap saga_first_start; /* "id" -> the first saga_ack started with that id */
    struct dup_pair {
        size_t first, second; /* saga_ack indexes */
    } *dups;
    size_t dup_count, dup_capacity;

    job_ack *jobs;
    size_t job_count, job_capacity;
    strmap job_by_id;

    multi_ack *multis;
    size_t multi_count, multi_capacity;
    strmap multi_by_id;

    model_totals totals;
};

ack_model *model_new(void) {
    ack_model *model = calloc(1, sizeof *model);
    if (!model) soak_die("out of memory");
    return model;
}

void model_free(ack_model *model) {
    if (!model) return;
    free(model->pending);
    for (size_t i = 0; i < model->line_count; i++) free(model->lines[i]);
    free(model->lines);
    free(model->line_cycles);
    free(model->cycles);
    for (size_t i = 0; i < model->saga_count; i++) {
        free(model->sagas[i].nonce);
        free(model->sagas[i].end_payload);
    }
    free(model->sagas);
    strmap_free(&model->saga_by_cycle_id);
    strmap_free(&model->saga_first_start);
    free(model->dups);
    for (size_t i = 0; i < model->job_count; i++) free(model->jobs[i].id);
    free(model->jobs);
    strmap_free(&model->job_by_id);
    for (size_t i = 0; i < model->multi_count; i++) {
        free(model->multis[i].dispatches);
        free(model->multis[i].answers);
    }
    free(model->multis);
    strmap_free(&model->multi_by_id);
    free(model);
}

static cycle_info *cycle_at(ack_model *model, int cycle) {
    if (cycle < 0) cycle = 0;
    if ((size_t)cycle >= model->cycle_capacity) {
        size_t old = model->cycle_capacity;
        model->cycle_capacity = (size_t)cycle * 2 + 16;
        model->cycles = xrealloc(model->cycles, model->cycle_capacity * sizeof *model->cycles);
        for (size_t i = old; i < model->cycle_capacity; i++) {
            memset(&model->cycles[i], 0, sizeof model->cycles[i]);
            model->cycles[i].kill_ms = -1;
        }
    }
    return &model->cycles[cycle];
}

/* The saga of `id` in the current cycle, made when there is none yet (its start ack lost). */
static saga_ack *saga_of_cycle(ack_model *model, uint64_t id) {
    char key[64];
    snprintf(key, sizeof key, "%d:%llu", model->cycle, (unsigned long long)id);
    size_t index;
    if (strmap_get(&model->saga_by_cycle_id, key, &index)) return &model->sagas[index];
    GROW(model->sagas, model->saga_count, model->saga_capacity);
    index = model->saga_count++;
    saga_ack *saga = &model->sagas[index];
    memset(saga, 0, sizeof *saga);
    saga->id = id;
    saga->cycle = model->cycle;
    *strmap_slot(&model->saga_by_cycle_id, key, 1) = index;
    return saga;
}

static job_ack *job_named(ack_model *model, const char *id) {
    size_t index;
    if (strmap_get(&model->job_by_id, id, &index)) return &model->jobs[index];
    GROW(model->jobs, model->job_count, model->job_capacity);
    index = model->job_count++;
    job_ack *job = &model->jobs[index];
    memset(job, 0, sizeof *job);
    job->id = xstrdup(id);
    job->idempotent = -1;
    *strmap_slot(&model->job_by_id, id, 1) = index;
    return job;
}

static multi_ack *multi_of(ack_model *model, uint64_t id) {
    char key[32];
    snprintf(key, sizeof key, "%llu", (unsigned long long)id);
    size_t index;
    if (strmap_get(&model->multi_by_id, key, &index)) return &model->multis[index];
    GROW(model->multis, model->multi_count, model->multi_capacity);
    index = model->multi_count++;
    multi_ack *multi = &model->multis[index];
    memset(multi, 0, sizeof *multi);
    multi->id = id;
    *strmap_slot(&model->multi_by_id, key, 1) = index;
    return multi;
}

static void model_apply(ack_model *model, const char *line, size_t number) {
    char word[32] = "", a[192] = "", b[192] = "";
    unsigned long long id = 0;
    int n = 0, consumed = 0;
    if (sscanf(line, "%31s %n", word, &consumed) < 1) return;
    const char *rest = line + consumed;
    /* A cycle line opens the cycle every line after it belongs to (the parent writes it
       before it starts the child, and the child before is dead by then). */
    if (strcmp(word, "cycle") == 0 && sscanf(rest, "%d %7s", &n, a) == 2) {
        model->cycle = n;
        snprintf(cycle_at(model, n)->mode, sizeof model->cycles[n].mode, "%.7s", a);
    }
    model->line_cycles[number - 1] = model->cycle;
    cycle_at(model, model->cycle)->last_line = number;

    if (strcmp(word, "kill") == 0) {
        long long ms = 0;
        if (sscanf(rest, "%d %lld %*s %47s", &n, &ms, b) >= 2) {
            cycle_at(model, n)->kill_ms = ms;
            snprintf(model->cycles[n].trigger, sizeof model->cycles[n].trigger, "%.47s", b);
        }
    } else if (strcmp(word, "open-ok") == 0) {
        cycle_info *info = cycle_at(model, model->cycle);
        if (info->phase < 1) info->phase = 1;
    } else if (strcmp(word, "start-ok") == 0) {
        cycle_info *info = cycle_at(model, model->cycle);
        if (info->phase < 2) info->phase = 2;
    } else if (strcmp(word, "lane-ok") == 0) {
        cycle_at(model, model->cycle)->phase = 3;
    } else if (strcmp(word, "saga-start") == 0 && sscanf(rest, "%llu %191s", &id, a) == 2) {
        model->totals.saga_starts++;
        if (sscanf(rest, "%*u %*s %31s", b) == 1) {
            if (strcmp(b, "resume") == 0) model->totals.multi_starts[0]++;
            if (strcmp(b, "compensate") == 0) model->totals.multi_starts[1]++;
        }
        char key[64];
        snprintf(key, sizeof key, "%d:%llu", model->cycle, id);
        size_t index;
        if (strmap_get(&model->saga_by_cycle_id, key, &index) && model->sagas[index].start_line == 0) {
            /* Its end or cancel line came first (the lines of one cycle come from several
               threads): this is the same saga. */
            model->sagas[index].start_line = number;
            model->sagas[index].nonce = xstrdup(a);
        } else {
            GROW(model->sagas, model->saga_count, model->saga_capacity);
            index = model->saga_count++;
            saga_ack *saga = &model->sagas[index];
            memset(saga, 0, sizeof *saga);
            saga->id = id;
            saga->cycle = model->cycle;
            saga->start_line = number;
            saga->nonce = xstrdup(a);
            *strmap_slot(&model->saga_by_cycle_id, key, 1) = index;
        }
        snprintf(key, sizeof key, "%llu", id);
        size_t first;
        if (strmap_get(&model->saga_first_start, key, &first)) {
            GROW(model->dups, model->dup_count, model->dup_capacity);
            model->dups[model->dup_count++] = (struct dup_pair){first, index};
        } else {
            *strmap_slot(&model->saga_first_start, key, 1) = index;
        }
    } else if (strcmp(word, "saga-cancel-ok") == 0 && sscanf(rest, "%llu", &id) == 1) {
        model->totals.saga_cancels++;
        saga_ack *saga = saga_of_cycle(model, id);
        if (!saga->cancel_line) saga->cancel_line = number;
    } else if (strcmp(word, "saga-end") == 0 && (consumed = 0, sscanf(rest, "%llu %15s %n", &id, a, &consumed)) >= 2 &&
               consumed > 0) {
        if (strcmp(a, "completed") == 0) model->totals.saga_completed++;
        else model->totals.saga_failed++;
        saga_ack *saga = saga_of_cycle(model, id);
        if (saga->end_count < 2) {
            saga->end_lines[saga->end_count] = number;
            snprintf(saga->end_states[saga->end_count], sizeof saga->end_states[0], "%.15s", a);
        }
        if (saga->end_count++ == 0) saga->end_payload = xstrdup(rest + consumed);
    } else if (strcmp(word, "job-submit") == 0 && sscanf(rest, "%191s %d", a, &n) == 2) {
        model->totals.job_submits++;
        job_ack *job = job_named(model, a);
        if (job->submit_count < 2) job->submit_lines[job->submit_count] = number;
        job->submit_count++;
        if (job->idempotent < 0) job->idempotent = n;
    } else if (strcmp(word, "job-cancel-ok") == 0 && sscanf(rest, "%191s", a) == 1) {
        model->totals.job_cancels++;
        job_ack *job = job_named(model, a);
        if (!job->cancel_line) job->cancel_line = number;
    } else if (strcmp(word, "job-start") == 0 && sscanf(rest, "%191s %d", a, &n) == 2) {
        model->totals.job_starts++;
        job_ack *job = job_named(model, a);
        if (job->start_count < JOB_MAX_STARTS) {
            job->start_lines[job->start_count] = number;
            job->start_attempts[job->start_count] = n;
        }
        job->start_count++;
    } else if (strcmp(word, "job-end") == 0 && sscanf(rest, "%191s %191s", a, b) == 2) {
        model->totals.job_ends++;
        job_ack *job = job_named(model, a);
        if (job->end_count < 2) {
            job->end_lines[job->end_count] = number;
            snprintf(job->end_states[job->end_count], sizeof job->end_states[0], "%.15s", b);
        }
        job->end_count++;
    } else if (strcmp(word, "job-fail") == 0 && sscanf(rest, "%191s %d", a, &n) == 2) {
        job_ack *job = job_named(model, a);
        for (size_t k = job->start_count < JOB_MAX_STARTS ? job->start_count : JOB_MAX_STARTS; k-- > 0;) {
            if (job->start_attempts[k] == n) {
                if (!job->fail_lines[k]) job->fail_lines[k] = number;
                break;
            }
        }
    } else if (strcmp(word, "job-rebuilt") == 0 && sscanf(rest, "%191s", a) == 1) {
        model->totals.job_rebuilt++;
        job_ack *job = job_named(model, a);
        job->rebuilt_line = number;
    } else if (strcmp(word, "lagged") == 0) {
        model->totals.lagged++;
    } else if (strcmp(word, "dispatch") == 0) {
        dispatch_ack d;
        memset(&d, 0, sizeof d);
        char kind[8] = "";
        unsigned step = 0;
        int fields = sscanf(rest, "%llu %u %15s %7s %d %7s %d", &id, &step, d.target, kind, &d.k, d.fate, &d.compensates);
        if (fields < 6) return;
        d.line = number;
        d.step = step;
        d.undo = strcmp(kind, "undo") == 0;
        if (!d.undo) d.compensates = -1;
        if (d.undo) model->totals.undo_dispatches++;
        else model->totals.step_dispatches++;
        multi_ack *multi = multi_of(model, id);
        GROW(multi->dispatches, multi->dispatch_count, multi->dispatch_capacity);
        multi->dispatches[multi->dispatch_count++] = d;
    } else if (strcmp(word, "answer") == 0) {
        unsigned step = 0;
        if (sscanf(rest, "%llu %u %7s", &id, &step, a) != 3) return;
        multi_ack *multi = multi_of(model, id);
        GROW(multi->answers, multi->answer_count, multi->answer_capacity);
        multi->answers[multi->answer_count++] = (answer_ack){number, step, strcmp(a, "ok") == 0};
    }
}

void model_read(ack_model *model, const char *path) {
    FILE *file = fopen(path, "r");
    if (!file) {
        if (errno == ENOENT) return;
        soak_die("cannot read %s: %s", path, strerror(errno));
    }
    if (fseeko(file, model->offset, SEEK_SET) != 0) soak_die("cannot seek in %s", path);
    char *line = NULL;
    size_t size = 0;
    ssize_t length;
    while ((length = getline(&line, &size, file)) > 0) {
        if (line[length - 1] != '\n') {
            /* Torn: keep it out of the model, and read it again next time. */
            free(model->pending);
            model->pending = xstrdup(line);
            break;
        }
        model->offset += length;
        free(model->pending);
        model->pending = NULL;
        line[length - 1] = '\0';
        if (model->line_count == model->line_capacity) {
            model->line_capacity = model->line_capacity ? model->line_capacity * 2 : 1024;
            model->lines = xrealloc(model->lines, model->line_capacity * sizeof *model->lines);
            model->line_cycles = xrealloc(model->line_cycles, model->line_capacity * sizeof *model->line_cycles);
        }
        model->lines[model->line_count++] = xstrdup(line);
        model_apply(model, line, model->line_count);
    }
    free(line);
    fclose(file);
}

int model_torn_tail(const ack_model *model) { return model->pending != NULL; }

int model_cycle_phase(const ack_model *model, int cycle) {
    return cycle >= 0 && (size_t)cycle < model->cycle_capacity ? model->cycles[cycle].phase : 0;
}

const char *model_line(const ack_model *model, size_t number) {
    return number >= 1 && number <= model->line_count ? model->lines[number - 1] : NULL;
}

size_t model_line_count(const ack_model *model) { return model->line_count; }

model_totals model_get_totals(const ack_model *model) { return model->totals; }

model_picks model_pick(const ack_model *model) {
    model_picks picks;
    memset(&picks, 0, sizeof picks);
    uint64_t first_id = 0;
    for (size_t i = 0; i < model->saga_count; i++) {
        if (model->sagas[i].start_line) {
            snprintf(picks.first_saga_line, sizeof picks.first_saga_line, "%s", model_line(model, model->sagas[i].start_line));
            first_id = model->sagas[i].id;
            break;
        }
    }
    /* Sagas of the last cycle, where forged lines land, other than the one above. */
    for (size_t i = model->saga_count; i-- > 0 && picks.saga_count < 4;) {
        const saga_ack *saga = &model->sagas[i];
        if (saga->cycle != model->cycle || saga->id == first_id) continue;
        if (saga->start_line && saga->end_count == 1 && strcmp(saga->end_states[0], "completed") == 0 && !saga->cancel_line)
            picks.saga_ids[picks.saga_count++] = saga->id;
    }
    for (size_t i = model->saga_count; i-- > 0 && !picks.failed_saga;) {
        const saga_ack *saga = &model->sagas[i];
        if (saga->cycle == model->cycle && saga->start_line && saga->end_count == 1 &&
            strcmp(saga->end_states[0], "failed") == 0 && !saga->cancel_line) {
            picks.failed_saga = saga->id;
            picks.failed_saga_end_line = saga->end_lines[0];
        }
    }
    for (size_t i = 0; i < model->multi_count && !picks.multi_saga; i++) {
        int seen = 0;
        for (size_t k = 0; k < model->multis[i].dispatch_count; k++) {
            const dispatch_ack *d = &model->multis[i].dispatches[k];
            if (!d->undo && d->k == (int)d->step && d->k < 2) seen |= 1 << d->k;
        }
        if (seen == 3) picks.multi_saga = model->multis[i].id;
    }
    for (size_t i = 0; i < model->job_count; i++) {
        const job_ack *job = &model->jobs[i];
        if (job->start_count != 1 || job->cancel_line || job->end_count != 1) continue;
        if (!picks.started_job[0] && job->idempotent == 0)
            snprintf(picks.started_job, sizeof picks.started_job, "%s", job->id);
        else if (!picks.started_job2[0] && strcmp(job->end_states[0], "finished") == 0)
            snprintf(picks.started_job2, sizeof picks.started_job2, "%s", job->id);
        else if (!picks.finished_job[0] && strcmp(job->end_states[0], "finished") == 0)
            snprintf(picks.finished_job, sizeof picks.finished_job, "%s", job->id);
    }
    return picks;
}

/* ---- The log -------------------------------------------------------------------------------- */

typedef struct saga_row {
    unsigned long long id;
    char *state, *input, *reason, *name;
    size_t first_step, step_count; /* its rows in log_view.steps, by step index */
    int terminal_count;            /* its SagaCompleted and SagaFailed in the lifecycle table */
    char terminal_state[24];       /* the first one's "state" */
    size_t terminal_position;
} saga_row;

typedef struct step_row {
    unsigned long long saga_id;
    unsigned step;
    char *target, *command, *state;
    int compensates; /* -1: a forward step */
    int attempts;
} step_row;

typedef struct job_row {
    char *id, *lane, *state, *error, *metadata;
    int attempts;
} job_row;

typedef struct log_view {
    saga_row *sagas;
    size_t saga_count, saga_capacity;
    strmap saga_by_id;
    job_row *jobs;
    size_t job_count, job_capacity;
    strmap job_by_id;
    step_row *steps; /* by saga id, then step index */
    size_t step_count, step_capacity;
} log_view;

static char *column_text(sqlite3_stmt *stmt, int column) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    return xstrdup(text ? (const char *)text : "");
}

static void log_view_free(log_view *view) {
    for (size_t i = 0; i < view->saga_count; i++) {
        free(view->sagas[i].state);
        free(view->sagas[i].input);
        free(view->sagas[i].reason);
        free(view->sagas[i].name);
    }
    for (size_t i = 0; i < view->step_count; i++) {
        free(view->steps[i].target);
        free(view->steps[i].command);
        free(view->steps[i].state);
    }
    free(view->steps);
    free(view->sagas);
    strmap_free(&view->saga_by_id);
    for (size_t i = 0; i < view->job_count; i++) {
        free(view->jobs[i].id);
        free(view->jobs[i].lane);
        free(view->jobs[i].state);
        free(view->jobs[i].error);
        free(view->jobs[i].metadata);
    }
    free(view->jobs);
    strmap_free(&view->job_by_id);
}

/* Reads every saga and job row. Returns 0, or -1 with the reason in `why`. */
static int copy_whole(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buffer[65536];
    size_t n;
    while (ok && (n = fread(buffer, 1, sizeof buffer, in)) > 0) ok = fwrite(buffer, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok ? 0 : -1;
}

static int log_view_read(const char *db_path, log_view *view, char *why, size_t why_size, int *exists) {
    *exists = access(db_path, F_OK) == 0;
    if (!*exists) return 0; /* killed before the open created it: an empty log */
    sqlite3 *db = NULL;
    /* A child killed while it created the log (before the log switched to WAL) leaves a hot
       rollback journal, which a read-only connection cannot roll back ("attempt to write a
       readonly database"); the next open rolls it back. Read a copy, rolled back, instead. */
    char journal[4096], copy[4096], copy_journal[4096 + 16];
    snprintf(journal, sizeof journal, "%s-journal", db_path);
    struct stat st;
    int hot = stat(journal, &st) == 0 && st.st_size > 0;
    if (hot) {
        snprintf(copy, sizeof copy, "%s.rolled-back", db_path);
        snprintf(copy_journal, sizeof copy_journal, "%s-journal", copy);
        if (copy_whole(db_path, copy) != 0 || copy_whole(journal, copy_journal) != 0) {
            snprintf(why, why_size, "cannot copy %s and its journal: %s", db_path, strerror(errno));
            return -1;
        }
        db_path = copy;
    }
    /* Read-only: no checkpoint, no write, so the next child finds the log exactly as the
       killed one left it, WAL included. */
    int rc = sqlite3_open_v2(db_path, &db, hot ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *stmt = NULL;
    int status = -1;
    if (rc != SQLITE_OK) goto failed;

    /* integrity_check answers one row "ok", or rows of problems. */
    rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, NULL);
    if (rc != SQLITE_OK) goto failed;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(stmt, 0);
        if (!text || strcmp(text, "ok") != 0) {
            snprintf(why, why_size, "PRAGMA integrity_check: %s", text ? text : "(null)");
            goto done;
        }
    }
    if (rc != SQLITE_DONE) goto failed;
    sqlite3_finalize(stmt);
    stmt = NULL;

    /* The tables exist once the first migration committed; a child killed before that left
       none, and nothing acknowledged either. */
    int tables = 0;
    rc = sqlite3_prepare_v2(db,
                            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                            " AND name IN ('saga', 'lane_job', 'saga_step', 'saga_event')",
                            -1, &stmt, NULL);
    if (rc != SQLITE_OK) goto failed;
    if ((rc = sqlite3_step(stmt)) != SQLITE_ROW) goto failed;
    tables = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (tables < 4) {
        status = 0;
        goto done;
    }

    rc = sqlite3_prepare_v2(db, "SELECT id, state, input_json, failure_reason, name FROM saga", -1, &stmt, NULL);
    if (rc != SQLITE_OK) goto failed;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        GROW(view->sagas, view->saga_count, view->saga_capacity);
        saga_row *row = &view->sagas[view->saga_count];
        memset(row, 0, sizeof *row);
        row->id = (unsigned long long)sqlite3_column_int64(stmt, 0);
        row->state = column_text(stmt, 1);
        row->input = column_text(stmt, 2);
        row->reason = column_text(stmt, 3);
        row->name = column_text(stmt, 4);
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)sqlite3_column_int64(stmt, 0));
        *strmap_slot(&view->saga_by_id, key, 1) = view->saga_count++;
    }
    if (rc != SQLITE_DONE) goto failed;
    sqlite3_finalize(stmt);
    stmt = NULL;

    /* The steps of the sagas of many steps (the others' are the existing checks' business
       through their sagas' ends), and every saga's terminal events. */
    rc = sqlite3_prepare_v2(db,
                            "SELECT s.saga_id, s.step_index, s.target, s.command_json, s.state, s.compensates, s.attempts"
                            " FROM saga_step s JOIN saga g ON g.id = s.saga_id"
                            " WHERE g.name IN ('resume', 'compensate') ORDER BY s.saga_id, s.step_index",
                            -1, &stmt, NULL);
    if (rc != SQLITE_OK) goto failed;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        GROW(view->steps, view->step_count, view->step_capacity);
        step_row *row = &view->steps[view->step_count];
        row->saga_id = (unsigned long long)sqlite3_column_int64(stmt, 0);
        row->step = (unsigned)sqlite3_column_int(stmt, 1);
        row->target = column_text(stmt, 2);
        row->command = column_text(stmt, 3);
        row->state = column_text(stmt, 4);
        row->compensates = sqlite3_column_type(stmt, 5) == SQLITE_NULL ? -1 : sqlite3_column_int(stmt, 5);
        row->attempts = sqlite3_column_int(stmt, 6);
        char key[32];
        snprintf(key, sizeof key, "%llu", row->saga_id);
        size_t index;
        if (strmap_get(&view->saga_by_id, key, &index)) {
            if (view->sagas[index].step_count == 0) view->sagas[index].first_step = view->step_count;
            view->sagas[index].step_count++;
        }
        view->step_count++;
    }
    if (rc != SQLITE_DONE) goto failed;
    sqlite3_finalize(stmt);
    stmt = NULL;

    rc = sqlite3_prepare_v2(db,
                            "SELECT saga_id, position, json_extract(payload_json, '$.state') FROM saga_event"
                            " WHERE type IN ('SagaCompleted', 'SagaFailed') ORDER BY position",
                            -1, &stmt, NULL);
    if (rc != SQLITE_OK) goto failed;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        char key[32];
        snprintf(key, sizeof key, "%lld", (long long)sqlite3_column_int64(stmt, 0));
        size_t index;
        if (!strmap_get(&view->saga_by_id, key, &index)) continue; /* the foreign key forbids it */
        saga_row *row = &view->sagas[index];
        if (row->terminal_count++ == 0) {
            const unsigned char *state = sqlite3_column_text(stmt, 2);
            snprintf(row->terminal_state, sizeof row->terminal_state, "%s", state ? (const char *)state : "");
            row->terminal_position = (size_t)sqlite3_column_int64(stmt, 1);
        }
    }
    if (rc != SQLITE_DONE) goto failed;
    sqlite3_finalize(stmt);
    stmt = NULL;

    rc = sqlite3_prepare_v2(db, "SELECT id, lane, state, attempts, error, CAST(metadata AS TEXT) FROM lane_job", -1,
                            &stmt, NULL);
    if (rc != SQLITE_OK) goto failed;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        GROW(view->jobs, view->job_count, view->job_capacity);
        job_row *row = &view->jobs[view->job_count];
        row->id = column_text(stmt, 0);
        row->lane = column_text(stmt, 1);
        row->state = column_text(stmt, 2);
        row->attempts = sqlite3_column_int(stmt, 3);
        row->error = column_text(stmt, 4);
        row->metadata = column_text(stmt, 5);
        *strmap_slot(&view->job_by_id, row->id, 1) = view->job_count++;
    }
    if (rc != SQLITE_DONE) goto failed;
    status = 0;
    goto done;

failed:
    snprintf(why, why_size, "cannot read the log: %s (%s)", db ? sqlite3_errmsg(db) : "no connection", sqlite3_errstr(rc));
done:
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return status;
}

static const saga_row *saga_row_of(const log_view *view, uint64_t id) {
    char key[32];
    snprintf(key, sizeof key, "%llu", (unsigned long long)id);
    size_t index;
    return strmap_get(&view->saga_by_id, key, &index) ? &view->sagas[index] : NULL;
}

static const job_row *job_row_of(const log_view *view, const char *id) {
    size_t index;
    return strmap_get(&view->job_by_id, id, &index) ? &view->jobs[index] : NULL;
}

/* ---- Describing what contradicts what -------------------------------------------------------- */

/* A growing text buffer for a violation's detail. */
typedef struct text {
    char *data;
    size_t length, capacity;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = t->capacity - t->length;
        va_start(ap, fmt);
        int n = vsnprintf(t->data ? t->data + t->length : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) soak_die("cannot format a violation");
        if ((size_t)n < room) {
            t->length += (size_t)n;
            return;
        }
        t->capacity = (t->capacity + (size_t)n + 1) * 2;
        t->data = xrealloc(t->data, t->capacity);
    }
}

/* "ack line 1234 (cycle 7, 3 lines before its kill at 141 ms): saga-start 17 7-12-00c0ffee" */
static void text_line(text *t, const ack_model *model, size_t number) {
    if (!number || number > model->line_count) return;
    int cycle = model->line_cycles[number - 1];
    const cycle_info *info = &model->cycles[cycle];
    if (info->kill_ms >= 0)
        text_add(t, "\n    ack line %zu (cycle %d, %zu line%s before its kill at %lld ms%s%s): %s", number, cycle,
                 info->last_line - number, info->last_line - number == 1 ? "" : "s", (long long)info->kill_ms,
                 info->trigger[0] ? " " : "", info->trigger, model->lines[number - 1]);
    else
        text_add(t, "\n    ack line %zu (cycle %d, %s): %s", number, cycle,
                 strcmp(info->mode, "clean") == 0 ? "the clean run" : "not killed", model->lines[number - 1]);
}

static void text_saga_row(text *t, uint64_t id, const saga_row *row) {
    if (row)
        text_add(t, "\n    log: saga %llu state=%s input=%s failure_reason=\"%s\"", (unsigned long long)id, row->state,
                 row->input, row->reason);
    else
        text_add(t, "\n    log: no saga row %llu", (unsigned long long)id);
}

static void text_job_row(text *t, const char *id, const job_row *row) {
    if (row)
        text_add(t, "\n    log: lane_job %s lane=%s state=%s attempts=%d error=\"%s\" metadata=\"%s\"", id, row->lane,
                 row->state, row->attempts, row->error, row->metadata);
    else
        text_add(t, "\n    log: no lane_job row %s", id);
}

static void add(violation_list *out, violation_kind kind, const char *subject, const size_t *lines, int line_count,
                text *t) {
    violations_add(out, kind, subject, lines, line_count, "%s", t->data ? t->data : "");
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* ---- The checks ----------------------------------------------------------------------------- */

static int saga_failed_state(const char *state) {
    return strcmp(state, "failed") == 0 || strcmp(state, "failed_compensation") == 0 || strcmp(state, "compensated") == 0;
}
static int saga_unfinished(const char *state) {
    return strcmp(state, "running") == 0 || strcmp(state, "compensating") == 0;
}
static int job_unfinished(const char *state) { return strcmp(state, "queued") == 0 || strcmp(state, "running") == 0; }

/* The "reason" string of a SagaFailed payload, unescaped (the reasons here are ASCII), or "". */
static void payload_reason(const char *payload, char *out, size_t size) {
    size_t n = 0;
    const char *at = payload ? strstr(payload, "\"reason\":\"") : NULL;
    if (at) {
        for (at += strlen("\"reason\":\""); *at && *at != '"' && n + 1 < size; at++) {
            if (*at == '\\' && at[1]) {
                at++;
                if (*at == 'u' && strlen(at) >= 5) {
                    out[n++] = (char)strtol((char[]){at[1], at[2], at[3], at[4], 0}, NULL, 16);
                    at += 4;
                    continue;
                }
                out[n++] = *at == 'n' ? '\n' : *at == 't' ? '\t' : *at;
                continue;
            }
            out[n++] = *at;
        }
    }
    out[n] = '\0';
}

/* Whether the row holds this saga's input: its nonce, quoted, so a prefix does not match. */
static int row_has_nonce(const saga_row *row, const char *nonce) {
    char needle[256];
    snprintf(needle, sizeof needle, "\"nonce\":\"%s\"", nonce);
    return strstr(row->input, needle) != NULL;
}

static void check_sagas(const ack_model *model, const log_view *view, int final, violation_list *out) {
    text t = {0};
    char subject[64];

    for (size_t i = 0; i < model->dup_count; i++) {
        const saga_ack *first = &model->sagas[model->dups[i].first], *second = &model->sagas[model->dups[i].second];
        snprintf(subject, sizeof subject, "%llu@%zu", (unsigned long long)first->id, second->start_line);
        text_add(&t, "sl_saga_start handed out saga id %llu twice", (unsigned long long)first->id);
        text_line(&t, model, first->start_line);
        text_line(&t, model, second->start_line);
        text_saga_row(&t, first->id, saga_row_of(view, first->id));
        size_t lines[2] = {first->start_line, second->start_line};
        add(out, V_SAGA_ID_REUSED, subject, lines, 2, &t);
    }

    for (size_t i = 0; i < model->saga_count; i++) {
        const saga_ack *saga = &model->sagas[i];
        const saga_row *row = saga_row_of(view, saga->id);
        snprintf(subject, sizeof subject, "%llu@%zu", (unsigned long long)saga->id,
                 saga->start_line ? saga->start_line : saga->end_lines[0]);
        int not_durable = saga->end_payload && strstr(saga->end_payload, "\"durable\":false");
        size_t lines[4] = {saga->start_line, saga->end_lines[0], saga->end_lines[1], saga->cancel_line};

        if (!row) {
            /* A saga whose running row could not be written says so in its SagaFailed. */
            if (!not_durable) {
                text_add(&t, "saga %llu was acknowledged, but the log has no row for it", (unsigned long long)saga->id);
                for (int k = 0; k < 4; k++) text_line(&t, model, lines[k]);
                text_saga_row(&t, saga->id, NULL);
                add(out, V_SAGA_MISSING, subject, lines, 4, &t);
            }
            continue;
        }
        if (saga->start_line && !row_has_nonce(row, saga->nonce)) {
            text_add(&t, "saga %llu was acknowledged for the saga with nonce %s, but its row holds another saga's input",
                     (unsigned long long)saga->id, saga->nonce);
            text_line(&t, model, saga->start_line);
            text_saga_row(&t, saga->id, row);
            add(out, V_SAGA_FOREIGN, subject, &saga->start_line, 1, &t);
            continue; /* the row says nothing about this saga's end */
        }
        if (saga->end_count > 1) {
            text_add(&t, "saga %llu had %zu terminal events", (unsigned long long)saga->id, saga->end_count);
            text_line(&t, model, saga->end_lines[0]);
            text_line(&t, model, saga->end_lines[1]);
            add(out, V_SAGA_END_TWICE, subject, saga->end_lines, 2, &t);
        }
        /* Recovery appends its reason to what the row said: "<terminal reason>; interrupted:
           ..." is a saga whose end had been written, rewritten by a later start. */
        int rewritten = !saga_unfinished(row->state) && strstr(row->reason, "; interrupted: ") != NULL;
        if (rewritten && (saga->end_count > 0 || saga->cancel_line)) {
            text_add(&t, "saga %llu had ended (%s), but a later start's recovery rewrote it as %s, interrupted",
                     (unsigned long long)saga->id, saga->end_count ? saga->end_states[0] : "cancelled", row->state);
            text_line(&t, model, saga->start_line);
            text_line(&t, model, saga->cancel_line);
            text_line(&t, model, saga->end_lines[0]);
            text_saga_row(&t, saga->id, row);
            size_t why[3] = {saga->end_lines[0], saga->cancel_line, saga->start_line};
            add(out, V_SAGA_END_REWRITTEN, subject, why, 3, &t);
        }
        for (size_t e = 0; e < saga->end_count && e < 2; e++) {
            /* completed <-> completed; failed <-> a failed state with the reason the event
               gave (a cancelled saga's reason is the cancel check's business, a rewritten
               one's the check above). */
            int completed = strcmp(saga->end_states[e], "completed") == 0;
            char reason[512] = "";
            if (e == 0) payload_reason(saga->end_payload, reason, sizeof reason);
            int wrong = completed ? strcmp(row->state, "completed") != 0 : !saga_failed_state(row->state);
            if (!wrong && !completed && e == 0 && !saga->cancel_line && !rewritten) wrong = strcmp(row->reason, reason) != 0;
            if (wrong) {
                text_add(&t, "saga %llu was reported %s%s%s%s, but the log says %s", (unsigned long long)saga->id,
                         saga->end_states[e], reason[0] ? " (\"" : "", reason, reason[0] ? "\")" : "", row->state);
                text_line(&t, model, saga->start_line);
                text_line(&t, model, saga->end_lines[e]);
                text_saga_row(&t, saga->id, row);
                size_t why[2] = {saga->end_lines[e], saga->start_line};
                char end_subject[96];
                snprintf(end_subject, sizeof end_subject, "%s#%zu", subject, e);
                add(out, V_SAGA_END_MISMATCH, end_subject, why, 2, &t);
            }
        }
        if (saga->cancel_line) {
            /* Once sl_saga_cancel returned 0 no other outcome can win: the saga ends failed,
               "cancelled: ...", and a crash must not change that. */
            const char *wrong = NULL;
            if (saga->end_count > 0 && strcmp(saga->end_states[0], "completed") == 0)
                wrong = "its terminal event says completed";
            else if (saga->end_count > 0 && !strstr(saga->end_payload, "cancelled: "))
                wrong = "its terminal event gives another reason";
            else if (!saga_unfinished(row->state) && !saga_failed_state(row->state))
                wrong = "the log says it ended otherwise";
            else if (!saga_unfinished(row->state) && strncmp(row->reason, "interrupted", 11) == 0)
                wrong = "the cancel was not durable: a restart found the saga unfinished and marked it interrupted";
            else if (!saga_unfinished(row->state) && strncmp(row->reason, "cancelled: ", 11) != 0)
                wrong = "the log gives another reason";
            else if (strcmp(row->state, "compensating") == 0 && strncmp(row->reason, "cancelled: ", 11) != 0)
                wrong = "it is compensating for another reason";
            else if (saga_unfinished(row->state) && (final || strcmp(row->state, "running") == 0))
                wrong = final ? "it never ended"
                              : "the cancel was not durable: after the kill the log still says running (the next start marks it interrupted)";
            if (wrong) {
                text_add(&t, "sl_saga_cancel(%llu) returned 0, but %s", (unsigned long long)saga->id, wrong);
                text_line(&t, model, saga->start_line);
                text_line(&t, model, saga->cancel_line);
                text_line(&t, model, saga->end_lines[0]);
                text_saga_row(&t, saga->id, row);
                size_t why[3] = {saga->cancel_line, saga->start_line, saga->end_lines[0]};
                add(out, V_SAGA_CANCEL_LOST, subject, why, 3, &t);
            }
        }
    }

    if (final) {
        /* After the clean run nothing may be left running: the clean child ended its own
           sagas, and its start-up recovery ended the killed children's. */
        for (size_t i = 0; i < view->saga_count; i++) {
            if (!saga_unfinished(view->sagas[i].state)) continue;
            unsigned long long id = view->sagas[i].id;
            snprintf(subject, sizeof subject, "%llu", id);
            text_add(&t, "after the clean run, saga %llu is still %s", id, view->sagas[i].state);
            text_saga_row(&t, id, &view->sagas[i]);
            add(out, V_SAGA_NEVER_ENDED, subject, NULL, 0, &t);
        }
    }
}

static void check_jobs(const ack_model *model, const log_view *view, int final, violation_list *out) {
    text t = {0};
    for (size_t i = 0; i < model->job_count; i++) {
        const job_ack *job = &model->jobs[i];
        const job_row *row = job_row_of(view, job->id);
        size_t starts = job->start_count < JOB_MAX_STARTS ? job->start_count : JOB_MAX_STARTS;

        if (job->submit_count > 1) {
            text_add(&t, "job %s was accepted twice", job->id);
            text_line(&t, model, job->submit_lines[0]);
            text_line(&t, model, job->submit_lines[1]);
            add(out, V_JOB_SUBMIT_TWICE, job->id, job->submit_lines, 2, &t);
        }
        if (job->submit_count > 0 && !row) {
            text_add(&t, "sl_lane_submit accepted job %s, but the log has no row for it", job->id);
            text_line(&t, model, job->submit_lines[0]);
            text_job_row(&t, job->id, NULL);
            add(out, V_JOB_MISSING, job->id, job->submit_lines, 1, &t);
        }
        if (job->cancel_line) {
            /* A cancel that returned 0 found the job queued: it never runs after it. Runs
               before it are possible only for a job with retries whose earlier attempts had
               failed and ended (its retry was queued again); any other run means the cancel
               found a job that was running or had ended. */
            int idempotent = job->idempotent;
            if (row && strstr(row->metadata, "idem=")) idempotent = strstr(row->metadata, "idem=1") != NULL;
            const char *wrong = NULL;
            size_t before = 0;
            for (size_t k = 0; k < starts; k++) {
                if (job->start_lines[k] > job->cancel_line) {
                    wrong = "the job started after it";
                    break;
                }
                before++;
                if (!job->fail_lines[k] || job->fail_lines[k] > job->cancel_line) wrong = "an earlier run had not failed before it";
            }
            if (!wrong && before > 0 && (idempotent != 1 || before >= 3)) wrong = "the job had used all its runs before it";
            if (wrong) {
                text_add(&t, "sl_lane_cancel(%s) returned 0, but %s (%zu run%s in all)", job->id, wrong, job->start_count,
                         job->start_count == 1 ? "" : "s");
                text_line(&t, model, job->submit_lines[0]);
                text_line(&t, model, job->cancel_line);
                text_line(&t, model, job->rebuilt_line);
                for (size_t k = 0; k < starts && k < 3; k++) {
                    text_line(&t, model, job->start_lines[k]);
                    text_line(&t, model, job->fail_lines[k]);
                }
                text_line(&t, model, job->end_lines[0]);
                text_job_row(&t, job->id, row);
                size_t why[5] = {job->cancel_line, job->start_lines[0], job->start_lines[1], job->start_lines[2],
                                 job->rebuilt_line};
                add(out, V_JOB_CANCEL_RAN, job->id, why, 5, &t);
            }
        }
        if (job->cancel_line && (!row || strcmp(row->state, "cancelled") != 0)) {
            text_add(&t, "sl_lane_cancel(%s) returned 0, but its row says %s", job->id, row ? row->state : "nothing");
            if (row && strcmp(row->state, "queued") == 0) text_add(&t, " (a restart rebuilds it and runs it)");
            text_line(&t, model, job->submit_lines[0]);
            text_line(&t, model, job->cancel_line);
            text_line(&t, model, job->rebuilt_line);
            text_job_row(&t, job->id, row);
            size_t why[2] = {job->cancel_line, job->rebuilt_line};
            add(out, V_JOB_CANCEL_ROW, job->id, why, 2, &t);
        }
        if (job->start_count > 1) {
            /* The plan in the row's metadata is the truth (the job-submit ack may be missing). */
            int idempotent = job->idempotent;
            if (row && strstr(row->metadata, "idem=")) idempotent = strstr(row->metadata, "idem=1") != NULL;
            int allowed = idempotent == 1 ? 3 : 1;
            int increasing = 1;
            for (size_t k = 1; k < starts; k++)
                if (job->start_attempts[k] <= job->start_attempts[k - 1]) increasing = 0;
            if ((int)job->start_count > allowed || !increasing) {
                text_add(&t, "job %s (%s) started %zu times%s", job->id,
                         idempotent == 1 ? "idempotent, max_attempts 3" : "not idempotent, max_attempts 1",
                         job->start_count, increasing ? "" : ", with attempt numbers not increasing");
                text_line(&t, model, job->submit_lines[0]);
                text_line(&t, model, job->rebuilt_line);
                for (size_t k = 0; k < starts; k++) text_line(&t, model, job->start_lines[k]);
                text_job_row(&t, job->id, row);
                add(out, V_JOB_RAN_TWICE, job->id, job->start_lines, (int)starts, &t);
            }
        }
        if (job->end_count > 1) {
            text_add(&t, "job %s had %zu done callbacks", job->id, job->end_count);
            text_line(&t, model, job->end_lines[0]);
            text_line(&t, model, job->end_lines[1]);
            add(out, V_JOB_END_TWICE, job->id, job->end_lines, 2, &t);
        }
        for (size_t e = 0; e < job->end_count && e < 2; e++) {
            if (row && strcmp(row->state, job->end_states[e]) == 0) continue;
            text_add(&t, "job %s was reported %s, but its row says %s", job->id, job->end_states[e], row ? row->state : "nothing");
            text_line(&t, model, job->end_lines[e]);
            text_job_row(&t, job->id, row);
            char end_subject[256];
            snprintf(end_subject, sizeof end_subject, "%s#%zu", job->id, e);
            add(out, V_JOB_END_MISMATCH, end_subject, &job->end_lines[e], 1, &t);
        }
    }
    if (final) {
        for (size_t i = 0; i < view->job_count; i++) {
            const job_row *row = &view->jobs[i];
            if (!job_unfinished(row->state)) continue;
            text_add(&t, "after the clean run, job %s is still %s", row->id, row->state);
            text_job_row(&t, row->id, row);
            add(out, V_JOB_NEVER_ENDED, row->id, NULL, 0, &t);
        }
    }
}

/* ---- Sagas of many steps -------------------------------------------------------------------- */

static const step_row *step_row_of(const log_view *view, const saga_row *saga, unsigned step) {
    for (size_t i = 0; saga && i < saga->step_count; i++)
        if (view->steps[saga->first_step + i].step == step) return &view->steps[saga->first_step + i];
    return NULL;
}

/* Whether a command holds "key":k, and not "key":k0 or the like. */
static int command_has(const char *command, const char *key, int k) {
    char needle[32];
    int n = snprintf(needle, sizeof needle, "\"%s\":%d", key, k);
    for (const char *at = strstr(command, needle); at; at = strstr(at + 1, needle))
        if (at[n] < '0' || at[n] > '9') return 1;
    return 0;
}

static int is_multi(const saga_row *row) { return strcmp(row->name, "resume") == 0 || strcmp(row->name, "compensate") == 0; }

static void text_dispatch(text *t, const ack_model *model, const dispatch_ack *d) { text_line(t, model, d->line); }

static void text_step_row(text *t, const step_row *row) {
    if (row)
        text_add(t, "\n    log: saga_step %llu/%u target=%s state=%s compensates=%d attempts=%d command=%s", row->saga_id,
                 row->step, row->target, row->state, row->compensates, row->attempts, row->command);
}

static void text_steps(text *t, const log_view *view, const saga_row *saga) {
    for (size_t i = 0; saga && i < saga->step_count; i++) text_step_row(t, &view->steps[saga->first_step + i]);
}

/* The earliest line at which the host answered `step` ok, before line `before` (0 if none). */
static size_t ok_answer_before(const multi_ack *multi, uint32_t step, size_t before) {
    for (size_t i = 0; i < multi->answer_count; i++)
        if (multi->answers[i].step == step && multi->answers[i].ok && multi->answers[i].line < before) return multi->answers[i].line;
    return 0;
}

/* Holds each saga of many steps to what its targets got: every dispatch under a step row
   already in the log, one step per (saga id, step) and one (saga id, step) per step (a
   re-dispatch under the same key is resume's promise, not a fault), forward steps one after
   another, compensations only of steps the host answered ok and the log says succeeded, in
   reverse order, each after the one before it succeeded. */
static void check_dispatches(const ack_model *model, const log_view *view, violation_list *out) {
    text t = {0};
    char subject[96];
    for (size_t m = 0; m < model->multi_count; m++) {
        const multi_ack *multi = &model->multis[m];
        const saga_row *saga = saga_row_of(view, multi->id);
        /* The first dispatch of each step index, and of each (kind, step it does or undoes). */
        const dispatch_ack *by_step[64] = {0}, *by_k[2][MULTI_K_MAX] = {{0}};
        const dispatch_ack *order[64]; /* first dispatches of step indexes, in line order */
        size_t order_count = 0;
        const dispatch_ack *first_undo = NULL;
        for (size_t i = 0; i < multi->dispatch_count; i++) {
            const dispatch_ack *d = &multi->dispatches[i];
            snprintf(subject, sizeof subject, "%llu/%u", (unsigned long long)multi->id, d->step);
            if (d->undo && !first_undo) first_undo = d;
            if (!d->undo && first_undo) {
                text_add(&t, "saga %llu's step %d was dispatched after its compensations had begun", (unsigned long long)multi->id, d->k);
                text_dispatch(&t, model, first_undo);
                text_dispatch(&t, model, d);
                size_t why[2] = {first_undo->line, d->line};
                add(out, V_STEP_ORDER, subject, why, 2, &t);
            }
            const step_row *row = step_row_of(view, saga, d->step);
            const char *wrong = NULL;
            if (!saga) wrong = "the log has no row of its saga";
            else if (!row) wrong = "the log has no row of that step";
            else if (strcmp(row->target, d->target) != 0) wrong = "the step row names another target";
            else if (!command_has(row->command, d->undo ? "undo" : "do", d->k)) wrong = "the step row holds another command";
            else if (row->compensates != (d->undo ? d->k : -1)) wrong = "the step row undoes another step";
            if (wrong) {
                /* The row is written and durable before the command goes out, and never deleted
                   while the saga is there. */
                text_add(&t, "saga %llu's step %u was dispatched, but %s", (unsigned long long)multi->id, d->step, wrong);
                text_dispatch(&t, model, d);
                text_step_row(&t, row);
                add(out, V_STEP_NOT_DURABLE, subject, &d->line, 1, &t);
            }
            if (d->undo && d->compensates != d->k) {
                text_add(&t, "saga %llu's compensation of step %d went out saying it compensates step %d",
                         (unsigned long long)multi->id, d->k, d->compensates);
                text_dispatch(&t, model, d);
                add(out, V_STEP_KEY_CONFLICT, subject, &d->line, 1, &t);
            }
            if (d->step >= 64 || d->k < 0 || d->k >= MULTI_K_MAX) continue;
            const dispatch_ack *first = by_step[d->step];
            if (!first) {
                by_step[d->step] = d;
                order[order_count++] = d;
            } else if (first->undo != d->undo || first->k != d->k || strcmp(first->target, d->target) != 0) {
                text_add(&t, "saga %llu's step %u was dispatched as %s %d to %s, then as %s %d to %s", (unsigned long long)multi->id,
                         d->step, first->undo ? "undo" : "do", first->k, first->target, d->undo ? "undo" : "do", d->k, d->target);
                text_dispatch(&t, model, first);
                text_dispatch(&t, model, d);
                size_t why[2] = {first->line, d->line};
                add(out, V_STEP_KEY_CONFLICT, subject, why, 2, &t);
            }
            const dispatch_ack *same = by_k[d->undo][d->k];
            if (!same) {
                by_k[d->undo][d->k] = d;
            } else if (same->step != d->step) {
                text_add(&t, "saga %llu's %s of step %d was dispatched under step %u, then under step %u",
                         (unsigned long long)multi->id, d->undo ? "compensation" : "forward command", d->k, same->step, d->step);
                text_dispatch(&t, model, same);
                text_dispatch(&t, model, d);
                size_t why[2] = {same->line, d->line};
                snprintf(subject, sizeof subject, "%llu/%s%d", (unsigned long long)multi->id, d->undo ? "undo" : "do", d->k);
                add(out, V_STEP_TWO_KEYS, subject, why, 2, &t);
            }
        }

        /* Forward steps: step k under index k, each first sent once step k-1 was answered ok,
           (none once compensations began: the loop above). Compensations: of steps answered ok and succeeded in
           the log, latest first, each once the one before it was answered ok. */
        const dispatch_ack *previous_step = NULL, *previous_undo = NULL;
        for (size_t i = 0; i < order_count; i++) {
            const dispatch_ack *d = order[i];
            snprintf(subject, sizeof subject, "%llu/%u", (unsigned long long)multi->id, d->step);
            if (!d->undo) {
                const char *wrong = NULL;
                if ((int)d->step != d->k) wrong = "under another step index than its place";
                else if (d->k > 0 && (!previous_step || previous_step->k != d->k - 1)) wrong = "without the step before it";
                else if (d->k > 0 && !ok_answer_before(multi, previous_step->step, d->line))
                    wrong = "before the step before it succeeded";
                if (wrong) {
                    text_add(&t, "saga %llu's step %d was dispatched %s", (unsigned long long)multi->id, d->k, wrong);
                    if (previous_step) text_dispatch(&t, model, previous_step);
                    text_dispatch(&t, model, d);
                    text_steps(&t, view, saga);
                    add(out, V_STEP_ORDER, subject, &d->line, 1, &t);
                }
                previous_step = d;
                continue;
            }
            const dispatch_ack *forward = by_k[0][d->k];
            const step_row *forward_row = forward ? step_row_of(view, saga, forward->step) : NULL;
            const char *wrong = NULL;
            if (!forward) wrong = "the step was never dispatched";
            else if (strcmp(forward->fate, "ok") != 0) wrong = "its target never answers it ok";
            else if (!ok_answer_before(multi, forward->step, d->line)) wrong = "its target had not answered it ok";
            else if (!forward_row || (strcmp(forward_row->state, "succeeded") != 0 && strcmp(forward_row->state, "compensated") != 0))
                wrong = "the log does not say it succeeded";
            if (wrong) {
                text_add(&t, "saga %llu's step %d was compensated, but %s", (unsigned long long)multi->id, d->k, wrong);
                if (forward) text_dispatch(&t, model, forward);
                text_dispatch(&t, model, d);
                text_steps(&t, view, saga);
                size_t why[2] = {d->line, forward ? forward->line : 0};
                add(out, V_UNDO_UNSUCCEEDED, subject, why, 2, &t);
            }
            if (previous_undo) {
                wrong = NULL;
                if (d->k >= previous_undo->k) wrong = "not in reverse order of the steps";
                else if (!ok_answer_before(multi, previous_undo->step, d->line)) wrong = "before the one before it succeeded";
                if (wrong) {
                    text_add(&t, "saga %llu's compensation of step %d was dispatched after that of step %d, %s",
                             (unsigned long long)multi->id, d->k, previous_undo->k, wrong);
                    text_dispatch(&t, model, previous_undo);
                    text_dispatch(&t, model, d);
                    size_t why[2] = {previous_undo->line, d->line};
                    add(out, V_UNDO_ORDER, subject, why, 2, &t);
                }
            }
            previous_undo = d;
        }
    }
}

/* Holds the log's sagas of many steps to how they ended, and every saga to its terminal
   events in the lifecycle table. */
static void check_endings(const log_view *view, int final, violation_list *out) {
    text t = {0};
    char subject[64];
    for (size_t i = 0; i < view->saga_count; i++) {
        const saga_row *saga = &view->sagas[i];
        snprintf(subject, sizeof subject, "%llu", saga->id);
        /* The terminal row and its event share one transaction: a final saga has exactly one,
           an unfinished one none, and its "state" is the row's. */
        int unfinished = saga_unfinished(saga->state);
        int expected = unfinished ? 0 : 1;
        if (saga->terminal_count != expected || (!unfinished && strcmp(saga->terminal_state, saga->state) != 0)) {
            text_add(&t, "saga %llu is %s, and the lifecycle table has %d terminal event%s for it%s%s", saga->id, saga->state,
                     saga->terminal_count, saga->terminal_count == 1 ? "" : "s", saga->terminal_count ? ", the first saying " : "",
                     saga->terminal_state);
            text_saga_row(&t, saga->id, saga);
            add(out, V_TERMINAL_COUNT, subject, NULL, 0, &t);
        }
        if (!is_multi(saga)) continue;
        if (strstr(saga->reason, "determinism error")) {
            text_add(&t, "saga %llu (%s) is %s: its replay after a restart diverged from its log", saga->id, saga->name, saga->state);
            text_saga_row(&t, saga->id, saga);
            text_steps(&t, view, saga);
            add(out, V_DETERMINISM, subject, NULL, 0, &t);
        }
        if (unfinished) continue;
        int steps = 0;
        {
            const char *at = strstr(saga->input, "\"steps\":");
            if (at) steps = atoi(at + strlen("\"steps\":"));
        }
        int forward = 0, succeeded = 0, not_undone = -1, undone_unproven = -1, failed_undo = 0, undos = 0;
        for (size_t k = 0; k < saga->step_count; k++) {
            const step_row *row = &view->steps[saga->first_step + k];
            if (row->compensates >= 0) {
                undos++;
                failed_undo |= strcmp(row->state, "failed") == 0;
                continue;
            }
            forward++;
            if (strcmp(row->state, "succeeded") == 0) {
                succeeded++;
                if (not_undone < 0) not_undone = (int)row->step;
            } else if (strcmp(row->state, "compensated") == 0) {
                int proven = 0;
                for (size_t c = 0; c < saga->step_count; c++) {
                    const step_row *undo = &view->steps[saga->first_step + c];
                    proven |= undo->compensates == (int)row->step && strcmp(undo->state, "succeeded") == 0;
                }
                if (!proven && undone_unproven < 0) undone_unproven = (int)row->step;
            }
        }
        const char *wrong = NULL;
        violation_kind kind = V_UNDO_INCOMPLETE;
        if (strcmp(saga->state, "completed") == 0) {
            kind = V_STEP_ORDER;
            if (forward != steps || succeeded != steps || undos) wrong = "its steps are not all there, each succeeded";
        } else if (strcmp(saga->state, "compensated") == 0) {
            if (not_undone >= 0) wrong = "a step that succeeded was never undone";
            else if (undone_unproven >= 0) wrong = "a step reads compensated, but no compensation of it succeeded";
        } else if (strcmp(saga->state, "failed") == 0) {
            if (succeeded) wrong = "a step that succeeded was never undone, yet each has a compensation";
        } else if (strcmp(saga->state, "failed_compensation") == 0) {
            if (!failed_undo) wrong = "none of its compensations failed";
        }
        if (wrong) {
            text_add(&t, "saga %llu (%s, %d steps) ended %s, but %s", saga->id, saga->name, steps, saga->state, wrong);
            text_saga_row(&t, saga->id, saga);
            text_steps(&t, view, saga);
            add(out, kind, subject, NULL, 0, &t);
        }
    }
    (void)final;
}

void check_log(const ack_model *model, const char *db_path, int final, violation_list *out) {
    log_view view;
    memset(&view, 0, sizeof view);
    char why[512] = "";
    int exists = 0;
    if (log_view_read(db_path, &view, why, sizeof why, &exists) != 0) {
        violations_add(out, V_LOG_INTEGRITY, "log", NULL, 0, "%s", why);
    } else {
        check_sagas(model, &view, final, out);
        check_jobs(model, &view, final, out);
        check_dispatches(model, &view, out);
        check_endings(&view, final, out);
    }
    log_view_free(&view);
}

void log_summary(const char *db_path, FILE *out) {
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT name, state, count(*) FROM saga GROUP BY name, state ORDER BY name, state", -1, &stmt,
                           NULL) != SQLITE_OK) {
        fprintf(out, "  (cannot read the log's saga counts: %s)\n", db ? sqlite3_errmsg(db) : "no connection");
    } else {
        char name[64] = "";
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            const char *type = (const char *)sqlite3_column_text(stmt, 0);
            if (strcmp(type, name) != 0) {
                fprintf(out, "%s  sagas of type %s in the log:", name[0] ? "\n" : "", type);
                snprintf(name, sizeof name, "%s", type);
            } else {
                fputc(',', out);
            }
            fprintf(out, " %s %d", (const char *)sqlite3_column_text(stmt, 1), sqlite3_column_int(stmt, 2));
        }
        if (name[0]) fputc('\n', out);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}
