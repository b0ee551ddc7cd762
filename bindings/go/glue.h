/*
 * C glue between sagalane.h and the Go trampolines. Go hands every userdata over as a
 * uintptr_t (a cgo.Handle), and this glue turns it into the `void *` the C API takes, so that
 * no Go code converts an integer to an unsafe.Pointer. Declarations only: the Go file with
 * //export includes it.
 */
#ifndef SAGALANE_GO_GLUE_H
#define SAGALANE_GO_GLUE_H

#include <stdint.h>
#include <stdlib.h>

#include <sagalane.h>

int slgo_subscribe(sl_runtime *rt, size_t buffer, uintptr_t handle, sl_subscription **out);
int slgo_lifecycle_subscribe(sl_runtime *rt, uint64_t after, uintptr_t handle, sl_subscription **out);
int slgo_saga_type_register(sl_runtime *rt, const char *name, const char *const *interests,
                            size_t interest_count, uint32_t timeout_ms, int recovery,
                            uint32_t compensation_timeout_ms, uintptr_t handle);
/* handle 0: no predicate (every event starts a saga) and nothing to release. */
int slgo_trigger_add(sl_runtime *rt, const char *event_type, const char *saga_type, uintptr_t handle);
int slgo_target_register(sl_runtime *rt, const char *name, uintptr_t handle);
/* sl_saga_start_ex, waiting for the running row; a non-zero handle gets the saga's end
   (goslSagaEnded) and is released after it (goslSagaStartRelease). */
int slgo_saga_start(sl_runtime *rt, const char *type_name, const char *input_json, int room_timeout_ms,
                    const char *idempotency_key, uintptr_t handle, uint64_t *saga_id);
/* Creates a lane; a non-zero handle becomes its reconstruct callback's userdata (the options'
   reconstruct and reconstruct_userdata are set here). */
int slgo_lane_create(sl_runtime *rt, const char *name, sl_lane_options *options, uintptr_t handle, sl_lane **out);
/* Points job->done and job->userdata at the Go job behind handle, and job->run too unless
   runnable is 0 (a job the library must refuse, its done still called). */
void slgo_job_bind(sl_job *job, uintptr_t handle, int runnable);
/* Binds the job to handle (runnable), then submits. */
int slgo_lane_submit(sl_lane *lane, sl_job *job, uintptr_t handle, sl_submission *out);
/* Binds jobs[i] to handles[i] (runnable) and submits the `count` jobs in one call; out holds
   `count` submissions with their size set. */
int slgo_lane_submit_batch(sl_lane *lane, sl_job *jobs, const uintptr_t *handles, size_t count, int *codes,
                           sl_submission *out);
/* Binds the job to handle (runnable) and submits it without waiting; `queued` is the handle
   of its queued callback. */
int slgo_lane_submit_async(sl_lane *lane, sl_job *job, uintptr_t handle, uintptr_t queued);
int slgo_lane_set_command_handler(sl_lane *lane, uintptr_t handle);

#endif
