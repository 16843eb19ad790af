//! [`PaymentQueue`] for [`RedisQueue`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::{Delivery, Job, PaymentQueue, QueueError, QueueStats};
use redis::{RedisError, Value};
use tracing::warn;

use super::{RedisQueue, SHARD_BLOCK};
use crate::error::translate;
use crate::scripts::deferred_member;

#[async_trait]
impl PaymentQueue for RedisQueue {
    async fn enqueue(&self, job: &Job) -> Result<(), QueueError> {
        // The order's own shard, or, if its node cannot be reached, the next that answers:
        // a job may sit on any shard, since its delivery id says which.
        let home = self.shard_of(job.order_id);
        let n = self.shards.len();
        let mut conn = self.shared().await?;
        let mut failure = None;
        for shard in (0..n).map(|k| (home + k) % n) {
            let added: Result<String, RedisError> = self
                .add_job(&self.shards[shard], job)
                .query_async(&mut conn)
                .await;
            match added.map_err(translate) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => failure = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(failure.expect("at least one shard"))
    }

    async fn enqueue_many(&self, jobs: &[Job]) -> Result<(), QueueError> {
        // One pipeline per home shard (its keys share a slot, so a cluster takes it whole);
        // if one fails, its jobs go one by one, each to the next shard that answers.
        let mut by_shard: Vec<Vec<&Job>> = vec![Vec::new(); self.shards.len()];
        for job in jobs {
            by_shard[self.shard_of(job.order_id)].push(job);
        }
        let conn = self.shared().await?;
        for (keys, jobs) in self.shards.iter().zip(&by_shard) {
            if jobs.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for job in jobs {
                pipe.add_command(self.add_job(keys, job)).ignore();
            }
            let added: Result<(), RedisError> = pipe.query_async(&mut conn.clone()).await;
            match added.map_err(translate) {
                Ok(()) => {}
                Err(e) if e.is_retryable() && self.shards.len() > 1 => {
                    for job in jobs {
                        self.enqueue(job).await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.promote_due().await?;
        let wait = wait.min(self.config.max_block);
        if self.shards.len() == 1 {
            return self.read_shard(&self.blocking().await?, 0, max, wait).await;
        }
        // Several shards: take what is there from each, starting at a different shard each
        // time; when all are empty, block briefly on one that answered, then look at all
        // again. A shard that cannot be reached (its cluster node is down) is skipped: the
        // others keep being served.
        let deadline = tokio::time::Instant::now() + wait;
        let shared = self.shared().await?;
        loop {
            let mut out = Vec::new();
            let mut answered = None;
            let mut failure = None;
            for shard in self.rotation() {
                match self
                    .read_shard(&shared, shard, max - out.len(), Duration::ZERO)
                    .await
                {
                    Ok(got) => {
                        answered = answered.or(Some(shard));
                        out.extend(got);
                    }
                    Err(e) if e.is_retryable() => failure = Some(e),
                    Err(e) => return Err(e),
                }
                if out.len() == max {
                    break;
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !out.is_empty() || left.is_zero() {
                return Ok(out);
            }
            let Some(quiet) = answered else {
                return Err(failure.expect("a shard failed if none answered"));
            };
            let got = self
                .read_shard(&self.blocking().await?, quiet, max, left.min(SHARD_BLOCK))
                .await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.ack_many(std::slice::from_ref(delivery)).await
    }

    async fn ack_many(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        // One XACK per shard, with every entry of that shard.
        let mut by_shard: Vec<Vec<&str>> = vec![Vec::new(); self.shards.len()];
        for delivery in deliveries {
            let (keys, entry) = self.locate(delivery)?;
            let shard = self
                .shards
                .iter()
                .position(|k| std::ptr::eq(k, keys))
                .expect("locate returns one of the shards");
            by_shard[shard].push(entry);
        }
        let conn = self.shared().await?;
        for (keys, entries) in self.shards.iter().zip(&by_shard) {
            if entries.is_empty() {
                continue;
            }
            self.with_group(keys, || async {
                let mut conn = conn.clone();
                redis::cmd("XACK")
                    .arg(&keys.stream)
                    .arg(&self.config.group)
                    .arg(entries)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        }
        Ok(())
    }

    async fn defer(&self, delivery: &Delivery, until: DateTime<Utc>) -> Result<(), QueueError> {
        let (keys, entry) = self.locate(delivery)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZADD")
            .arg(&keys.deferred)
            .arg("LT")
            .arg(until.timestamp_millis())
            .arg(deferred_member(delivery.order_id, delivery.trace))
            .ignore()
            .cmd("XACK")
            .arg(&keys.stream)
            .arg(&self.config.group)
            .arg(entry)
            .ignore();
        let conn = self.shared().await?;
        self.with_group(keys, || {
            let mut conn = conn.clone();
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await
    }

    async fn reclaim(&self, min_idle: Duration, max: usize) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let conn = self.shared().await?;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for shard in self.rotation() {
            match self
                .reclaim_shard(&conn, shard, idle_ms, max - out.len())
                .await
            {
                Ok(got) => out.extend(got),
                Err(e) if e.is_retryable() => failures.push(e),
                Err(e) => return Err(e),
            }
            if out.len() == max {
                break;
            }
        }
        if failures.len() == self.shards.len() {
            return Err(failures.pop().expect("at least one shard"));
        }
        self.sweep_consumers().await;
        if let Err(e) = self.trim_acknowledged().await {
            warn!(error = ?e, "trimming acknowledged entries failed");
        }
        Ok(out)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let (keys, entry) = self.locate(delivery)?;
        self.move_to_dead(
            keys,
            entry,
            &delivery.order_id.to_string(),
            delivery.deliveries,
            reason,
        )
        .await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let _: Value = redis::cmd("PING")
            .query_async(&mut self.shared().await?)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let conn = self.shared().await?;
        let mut stats = QueueStats::default();
        let mut oldest_ms: Option<u64> = None;
        for keys in self.shards.iter() {
            let mut conn = conn.clone();
            let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&keys.stream)
                .query_async(&mut conn)
                .await
                .or_else(|e| {
                    // No stream yet: nothing queued on this shard.
                    if e.kind() == redis::ErrorKind::ResponseError {
                        Ok(redis::streams::StreamInfoGroupsReply::default())
                    } else {
                        Err(e)
                    }
                })
                .map_err(translate)?;
            let group = groups.groups.iter().find(|g| g.name == self.config.group);
            let last_delivered =
                group.map_or_else(|| "0-0".to_owned(), |g| g.last_delivered_id.clone());
            if let Some(g) = group {
                stats.pending += g.pending as u64;
            }
            // The oldest entry not yet delivered, and the oldest delivered and unsettled.
            let (length, first_waiting, first_pending, deferred, dead): (
                u64,
                Vec<(String, Value)>,
                Value,
                u64,
                u64,
            ) = redis::pipe()
                .cmd("XLEN")
                .arg(&keys.stream)
                .cmd("XRANGE")
                .arg(&keys.stream)
                .arg(format!("({last_delivered}"))
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("XPENDING")
                .arg(&keys.stream)
                .arg(&self.config.group)
                .cmd("ZCARD")
                .arg(&keys.deferred)
                .cmd("XLEN")
                .arg(&keys.dead)
                .query_async(&mut conn)
                .await
                .or_else(|e| {
                    if e.kind() == redis::ErrorKind::ResponseError {
                        Ok((0, Vec::new(), Value::Nil, 0, 0))
                    } else {
                        Err(e)
                    }
                })
                .map_err(translate)?;
            // Redis counts what the group has yet to read (`lag`) unless it cannot tell; then
            // the stream's length less the pending entries bounds it from above.
            let pending = group.map_or(0, |g| g.pending as u64);
            stats.waiting += group
                .and_then(|g| g.lag)
                .map_or_else(|| length.saturating_sub(pending), |lag| lag as u64);
            stats.deferred += deferred;
            stats.dead += dead;
            let pending_min = match &first_pending {
                Value::Array(summary) => summary.get(1).and_then(|v| match v {
                    Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
                    _ => None,
                }),
                _ => None,
            };
            for id in first_waiting
                .iter()
                .map(|(id, _)| id.clone())
                .chain(pending_min)
            {
                if let Some(ms) = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()) {
                    oldest_ms = Some(oldest_ms.map_or(ms, |o| o.min(ms)));
                }
            }
        }
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        stats.oldest_age = oldest_ms.map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)));
        Ok(stats)
    }
}
