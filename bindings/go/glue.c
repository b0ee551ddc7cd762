#include "glue.h"

#include <stdlib.h>

#include "_cgo_export.h"

/* The C callbacks: each forwards to its Go trampoline (trampolines.go). The casts drop
   `const` only because cgo's exported prototypes cannot spell it. */

static void slgo_event(void *userdata, const sl_event *event) {
    goslEvent((uintptr_t)userdata, (sl_event *)event);
}

static void slgo_lifecycle(void *userdata, const sl_lifecycle_event *event) {
    goslLifecycle((uintptr_t)userdata, (sl_lifecycle_event *)event);
}

static void slgo_release(void *userdata) { goslRelease((uintptr_t)userdata); }

static int slgo_create(void *userdata, const char *input_json, void **state) {
    uintptr_t handle = 0;
    int rc = goslSagaCreate((uintptr_t)userdata, (char *)input_json, &handle);
    if (rc == 0) *state = (void *)handle;
    return rc;
}

static void slgo_destroy(void *userdata, void *state) {
    goslSagaDestroy((uintptr_t)userdata, (uintptr_t)state);
}

static void slgo_start(void *userdata, void *state, const sl_saga_ctx *ctx, sl_action *action) {
    goslSagaStart((uintptr_t)userdata, (uintptr_t)state, (sl_saga_ctx *)ctx, action);
}

static void slgo_on_event(void *userdata, void *state, const sl_saga_ctx *ctx, const sl_event *event,
                          sl_action *action) {
    goslSagaOnEvent((uintptr_t)userdata, (uintptr_t)state, (sl_saga_ctx *)ctx, (sl_event *)event, action);
}

static int slgo_predicate(void *userdata, const char *payload_json) {
    return goslPredicate((uintptr_t)userdata, (char *)payload_json);
}

static int slgo_target(void *userdata, uint64_t saga_id, uint32_t step, const char *command_json) {
    return goslTarget((uintptr_t)userdata, saga_id, step, (char *)command_json);
}

static int slgo_job_run(void *userdata, sl_job_ctx *ctx) { return goslJobRun((uintptr_t)userdata, ctx); }

static void slgo_job_done(void *userdata, const sl_job_outcome *outcome) {
    goslJobDone((uintptr_t)userdata, (sl_job_outcome *)outcome);
}

static void slgo_job_queued(void *userdata, int rc, const sl_submission *submission) {
    goslJobQueued((uintptr_t)userdata, rc, (sl_submission *)submission);
}

static int slgo_job_reconstruct(void *userdata, const sl_job_record *record, sl_job *job) {
    return goslJobReconstruct((uintptr_t)userdata, (sl_job_record *)record, job);
}

static void slgo_saga_ended(void *userdata, const sl_saga_end *end) {
    goslSagaEnded((uintptr_t)userdata, (sl_saga_end *)end);
}

static void slgo_saga_start_release(void *userdata) { goslSagaStartRelease((uintptr_t)userdata); }

/* The calls that take callbacks. */

int slgo_subscribe(sl_runtime *rt, size_t buffer, uintptr_t handle, sl_subscription **out) {
    return sl_subscribe(rt, buffer, slgo_event, (void *)handle, out);
}

int slgo_lifecycle_subscribe(sl_runtime *rt, uint64_t after, uintptr_t handle, sl_subscription **out) {
    return sl_lifecycle_subscribe(rt, after, slgo_lifecycle, (void *)handle, out);
}

int slgo_saga_type_register(sl_runtime *rt, const char *name, const char *const *interests,
                            size_t interest_count, uint32_t timeout_ms, int recovery,
                            uint32_t compensation_timeout_ms, uintptr_t handle) {
    sl_saga_type type;
    sl_saga_type_init(&type);
    type.name = name;
    type.create = slgo_create;
    type.destroy = slgo_destroy;
    type.start = slgo_start;
    type.on_event = slgo_on_event;
    type.interests = interests;
    type.interest_count = interest_count;
    type.timeout_ms = timeout_ms;
    type.recovery = recovery;
    type.compensation_timeout_ms = compensation_timeout_ms;
    type.release = slgo_release;
    return sl_saga_type_register(rt, &type, (void *)handle);
}

int slgo_trigger_add(sl_runtime *rt, const char *event_type, const char *saga_type, uintptr_t handle) {
    if (handle == 0) return sl_trigger_add(rt, event_type, saga_type, NULL, NULL, NULL);
    return sl_trigger_add(rt, event_type, saga_type, slgo_predicate, (void *)handle, slgo_release);
}

int slgo_target_register(sl_runtime *rt, const char *name, uintptr_t handle) {
    return sl_target_register(rt, name, slgo_target, (void *)handle, slgo_release);
}

int slgo_lane_create(sl_runtime *rt, const char *name, sl_lane_options *options, uintptr_t handle, sl_lane **out) {
    if (handle != 0) {
        options->reconstruct = slgo_job_reconstruct;
        options->reconstruct_userdata = (void *)handle;
    }
    return sl_lane_create(rt, name, options, out);
}

void slgo_job_bind(sl_job *job, uintptr_t handle, int runnable) {
    job->run = runnable ? slgo_job_run : NULL;
    job->done = slgo_job_done;
    job->userdata = (void *)handle;
}

int slgo_lane_submit(sl_lane *lane, sl_job *job, uintptr_t handle, sl_submission *out) {
    slgo_job_bind(job, handle, 1);
    return sl_lane_submit(lane, job, out);
}

int slgo_lane_submit_batch(sl_lane *lane, sl_job *jobs, const uintptr_t *handles, size_t count, int *codes,
                           sl_submission *out) {
    const sl_job **pointers = calloc(count ? count : 1, sizeof *pointers);
    sl_submission **outs = calloc(count ? count : 1, sizeof *outs);
    if (pointers == NULL || outs == NULL) {
        free(pointers);
        free(outs);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        slgo_job_bind(&jobs[i], handles[i], 1);
        pointers[i] = &jobs[i];
        outs[i] = &out[i];
    }
    int rc = sl_lane_submit_batch(lane, pointers, count, codes, outs);
    free(pointers);
    free(outs);
    return rc;
}

int slgo_lane_submit_async(sl_lane *lane, sl_job *job, uintptr_t handle, uintptr_t queued) {
    slgo_job_bind(job, handle, 1);
    return sl_lane_submit_async(lane, job, slgo_job_queued, (void *)queued);
}

int slgo_lane_set_command_handler(sl_lane *lane, uintptr_t handle) {
    return sl_lane_set_command_handler(lane, slgo_job_run, (void *)handle, slgo_release);
}

int slgo_saga_start(sl_runtime *rt, const char *type_name, const char *input_json, int room_timeout_ms,
                    const char *idempotency_key, uintptr_t handle, uint64_t *saga_id) {
    sl_saga_start_options options;
    sl_saga_start_options_init(&options);
    options.room_timeout_ms = room_timeout_ms;
    options.idempotency_key = idempotency_key;
    if (handle != 0) {
        options.ended = slgo_saga_ended;
        options.release = slgo_saga_start_release;
        options.userdata = (void *)handle;
    }
    return sl_saga_start_ex(rt, type_name, input_json, &options, saga_id);
}
