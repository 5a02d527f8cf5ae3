// The job record's state changes on Redis, each one Lua script so that it is atomic with the event it publishes.
// Each job ends exactly once: only a job still "running" can finish. A worker that only seemed dead (its lock ran
// out while its event loop was busy) may still be running a job another worker took over; the first run to finish
// ends the job (both ran the same request) and the other run is told to stop, its outcome dropped. `owner` (worker
// id and BullMQ's lock token) says which run holds the job now.
//
// The job hash holds: id seq status request createdAt startedAt finishedAt attempts progress params timings error
// errorField result cancelRequested owner finishedBy requeuedBy (the last two make retried writes idempotent). Events go out on one channel as JSON {id, type, ...}.

/** KEYS: job, video, done. ARGV: owner, now, channel, id, interruptedMessage.
 * Returns {"run", cancelRequested, attempt} | {"gone"} | {"finished"} | {"failed"} (interrupted twice). */
export const START = `
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'gone'} end
if st ~= 'queued' and st ~= 'running' then return {'finished'} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if st == 'running' and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  -- this very run started it already (a retry after the reply was lost)
  return {'run', redis.call('HGET', KEYS[1], 'cancelRequested') or '', tostring(attempts)}
end
if st == 'running' and attempts >= 2 then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finishedAt', ARGV[2], 'error', ARGV[5], 'owner', '')
  redis.call('HDEL', KEYS[1], 'errorField')
  redis.call('DEL', KEYS[2])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
  redis.call('PUBLISH', ARGV[3], cjson.encode({id = ARGV[4], type = 'failed'}))
  return {'failed'}
end
attempts = attempts + 1
redis.call('HSET', KEYS[1], 'status', 'running', 'startedAt', ARGV[2], 'attempts', attempts, 'owner', ARGV[1])
redis.call('HDEL', KEYS[1], 'progress')
redis.call('PUBLISH', ARGV[3], cjson.encode({id = ARGV[4], type = 'started', attempt = attempts}))
return {'run', redis.call('HGET', KEYS[1], 'cancelRequested') or '', tostring(attempts)}
`;

/** KEYS: job, video, done, result, results, resultBytes, durations.
 * ARGV: owner, status, now, channel, id, fields (JSON object of strings), resultBytes ('' = none), keepMs,
 * durationMs ('' = none), eventType, cancelChannel. Returns 1, or 0 when the job had ended already (1 again when
 * it was this very run that ended it: a retry after the reply was lost). */
export const FINISH = `
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  if redis.call('HGET', KEYS[1], 'finishedBy') == ARGV[1] then return 1 end
  return 0
end
local holder = redis.call('HGET', KEYS[1], 'owner')
if holder and holder ~= '' and holder ~= ARGV[1] then redis.call('PUBLISH', ARGV[11], ARGV[5]) end
local args = {'status', ARGV[2], 'finishedAt', ARGV[3], 'owner', '', 'finishedBy', ARGV[1]}
for k, v in pairs(cjson.decode(ARGV[6])) do
  table.insert(args, k)
  table.insert(args, v)
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('HDEL', KEYS[1], 'cancelRequested')
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[5])
if ARGV[7] ~= '' then
  redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[8])
  redis.call('ZADD', KEYS[5], ARGV[3], ARGV[5])
  redis.call('HSET', KEYS[6], ARGV[5], string.len(ARGV[7]))
end
if ARGV[9] ~= '' then
  redis.call('LPUSH', KEYS[7], ARGV[9])
  redis.call('LTRIM', KEYS[7], 0, 9)
end
redis.call('PUBLISH', ARGV[4], cjson.encode({id = ARGV[5], type = ARGV[10]}))
return 1
`;

/** A graceful stop: the job goes back to "queued" and this attempt does not count.
 * KEYS: job. ARGV: owner, channel, id. Returns 1 (also when this run did it already), or 0 when not owned. */
export const REQUEUE = `
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'queued' and redis.call('HGET', KEYS[1], 'requeuedBy') == ARGV[1] then return 1 end
if st ~= 'running' or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '1') - 1
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', attempts, 'owner', '', 'requeuedBy', ARGV[1])
redis.call('HDEL', KEYS[1], 'startedAt', 'progress')
redis.call('PUBLISH', ARGV[2], cjson.encode({id = ARGV[3], type = 'requeued'}))
return 1
`;

/** Ends a job no worker holds a lock on (its BullMQ job was just removed) as cancelled. A job still marked running
 * here has a worker that lost its lock (it stalled): that worker is told to stop too.
 * KEYS: job, video, done. ARGV: now, channel, id, cancelChannel. Returns 1, or 0 when it had ended already. */
export const CANCEL_WAITING = `
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
if st == 'running' then redis.call('PUBLISH', ARGV[4], ARGV[3]) end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finishedAt', ARGV[1], 'owner', '')
redis.call('HDEL', KEYS[1], 'cancelRequested')
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
redis.call('PUBLISH', ARGV[2], cjson.encode({id = ARGV[3], type = 'cancelled'}))
return 1
`;

/** Asks whichever worker runs the job to stop: a flag it reads when it starts or between steps, and a message.
 * KEYS: job. ARGV: cancelChannel, id. Returns 1, or 0 when the job had ended already. */
export const REQUEST_CANCEL = `
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'cancelRequested', '1')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`;

/** Deletes a finished job with its files. KEYS: job, video, result, jobs, done, results, resultBytes. ARGV: id.
 * Returns 1, or 0 when the job is not finished (or gone). */
export const DELETE_FINISHED = `
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'succeeded' and st ~= 'failed' and st ~= 'cancelled' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
return 1
`;

/** Deletes a stored result (retention); the job stays, its result marked unavailable.
 * KEYS: job, result, results, resultBytes. ARGV: id. */
export const DROP_RESULT = `
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local info = redis.call('HGET', KEYS[1], 'result')
if info then
  local r = cjson.decode(info)
  r.available = false
  redis.call('HSET', KEYS[1], 'result', cjson.encode(r))
end
return 1
`;
