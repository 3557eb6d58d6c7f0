package redisstore

import "github.com/redis/go-redis/v9"

// Redis layout, for a token named N under prefix P (the braces are a Redis
// Cluster hash tag, so both keys of a token live in one slot and one script
// can touch both):
//
//	P{N}:tok   hash: v = version (the fencing counter), d = stored value
//	P{N}:lock  string: owner of the refresh lock, with a PX expiry
//	P + "events"  pub/sub channel: "<version> <name>" after every write
//
// A token that was deleted keeps its hash with v incremented and no d (a
// tombstone), so versions never go back while Redis keeps its data.
//
// Every script is safe to run twice (go-redis retries a command whose answer
// was lost): acquiring a lock the caller already owns succeeds, and a commit
// whose exact value is already stored at the next version reports success.

// acquireScript takes the refresh lock unless the stored version moved on.
//
//	KEYS: tok, lock   ARGV: owner, ttl ms, known version (-1: unknown)
//	→ {2, v, d}     the stored version differs from the known one (not locked)
//	  {1, v, d}     locked
//	  {0, v, pttl}  the lock is held by another owner
var acquireScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local known = tonumber(ARGV[3])
if known >= 0 and v ~= known then
  return {2, v, redis.call('HGET', KEYS[1], 'd')}
end
local cur = redis.call('GET', KEYS[2])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, v, redis.call('HGET', KEYS[1], 'd')}
end
if cur then
  return {0, v, redis.call('PTTL', KEYS[2])}
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {1, v, redis.call('HGET', KEYS[1], 'd')}
`)

// commitScript writes a value at the next version if the stored version is
// the expected one and, when an owner is given, the caller still holds the
// lock; it then releases the lock and publishes the news. The next version
// is max(expected, floor)+1: floor, the highest version the writer ever saw,
// keeps versions rising when Redis lost its data.
//
//	KEYS: tok, lock   ARGV: owner ("" = no lock), expected version, value, channel, name, floor
//	→ new version, -1 lock not held, -2 version conflict
var commitScript = redis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local expected = tonumber(ARGV[2])
local nv = math.max(expected, tonumber(ARGV[6])) + 1
if v == nv and redis.call('HGET', KEYS[1], 'd') == ARGV[3] then
  if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[2])
  end
  return v
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
if v ~= expected then
  return -2
end
redis.call('HSET', KEYS[1], 'v', nv, 'd', ARGV[3])
if ARGV[1] ~= '' then
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[4], nv .. ' ' .. ARGV[5])
return nv
`)

// extendScript resets the lock's expiry if the caller still owns it.
//
//	KEYS: lock   ARGV: owner, ttl ms   → 1 extended, 0 not the owner
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the lock if the caller still owns it.
//
//	KEYS: lock   ARGV: owner   → 1 released, 0 not the owner
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// deleteScript leaves a tombstone and publishes the news.
//
//	KEYS: tok   ARGV: channel, name   → new version, 0 nothing stored
var deleteScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'd') == 0 then
  return 0
end
redis.call('HDEL', KEYS[1], 'd')
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('PUBLISH', ARGV[1], v .. ' ' .. ARGV[2])
return v
`)
