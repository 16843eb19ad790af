//! The Lua scripts the queue runs atomically on a shard, and the deferred set's member format.

use order_core::OrderId;
use order_core::trace::TraceParent;

/// Moves due members of the deferred set (KEYS[1]) into the stream (KEYS[2]), atomically.
/// A member is a job as [`deferred_member`] writes it: the order id, then, after a space,
/// its `traceparent` if it has one. ARGV: now in ms, most to move, MAXLEN.
pub(crate) const PROMOTE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local space = string.find(member, ' ', 1, true)
  if space then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
      'order_id', string.sub(member, 1, space - 1), 'traceparent', string.sub(member, space + 1))
  else
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'order_id', member)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

/// A deferred job as a member of the deferred set: its order id, and its trace after a space.
/// Every job of an order carries the order's trace, so one order still has one member and
/// deferring it again only moves it.
pub(crate) fn deferred_member(order: OrderId, trace: Option<TraceParent>) -> String {
    match trace {
        Some(trace) => format!("{order} {trace}"),
        None => order.to_string(),
    }
}

/// Deletes the entries of the stream (KEYS[1]) that the group (ARGV[1]) is done with: those
/// older than its oldest pending entry, or, with none pending, than the last entry it was
/// given. Returns how many were deleted.
pub(crate) const TRIM_ACKED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  if fields['name'] == ARGV[1] then floor = fields['last-delivered-id'] end
end
if floor == nil then return 0 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[1] > 0 then floor = pending[2] end
return redis.call('XTRIM', KEYS[1], 'MINID', floor)
";
