//! Gathering the commands of concurrent operations on one shared connection
//! into one write.
//!
//! redis-rs writes each command it is handed to the socket as soon as its
//! connection task runs, and on Tokio that task runs right after the
//! operation that woke it (the scheduler's LIFO slot): under load nearly
//! every command costs a `writev` of its own on the client and a `read` of
//! its own on the server. Here the first operation to queue a command on an
//! idle batch spawns a flush that first yields, so that every operation
//! ready to run queues its command too, then hands them all to redis-rs as
//! one pipeline: one write, one read on the server, replies matched back in
//! order. Under light load a batch holds one command and costs a task spawn
//! and a yield more than sending it directly.
//!
//! Each command's reply is its own: a server error answers only its
//! command; a connection error or timeout answers every command of the
//! batch, whose write waits at most `command_timeout` for its replies
//! (redis-rs's response timeout). A command whose operation has given up
//! (its future dropped) before the batch is written is left out. Nothing
//! is re-sent, and no operation waits forever: a flush that never runs (its
//! runtime shut down) answers its commands with an error when it is
//! dropped.

use std::sync::{Arc, Mutex};

use redis::{Cmd, Pipeline, RedisError, Value};
use tokio::sync::oneshot;

use super::topology::Node;

type Reply = oneshot::Sender<Result<Value, RedisError>>;

/// The commands waiting for the next write on one connection.
#[derive(Default)]
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    commands: Vec<Cmd>,
    replies: Vec<Reply>,
    /// A flush is spawned and has not taken the queue yet.
    flush_scheduled: bool,
}

impl Batcher {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is intact.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `cmd` for the next write on `node` and waits for its reply.
    /// The flush runs on the caller's runtime, else on `fallback`.
    pub(crate) async fn send(
        self: &Arc<Self>,
        node: &Node,
        fallback: &tokio::runtime::Handle,
        cmd: Cmd,
    ) -> Result<Value, RedisError> {
        let (reply, replied) = oneshot::channel();
        let lead = {
            let mut queue = self.queue();
            queue.commands.push(cmd);
            queue.replies.push(reply);
            !std::mem::replace(&mut queue.flush_scheduled, true)
        };
        if lead {
            // The guard is part of the task from its creation, so that a
            // task dropped before its first poll still answers the queue.
            let flush = flush(Unflushed(Some(Arc::clone(self))), node.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(current) => drop(current.spawn(flush)),
                Err(_) => drop(fallback.spawn(flush)),
            }
        }
        replied.await.unwrap_or_else(|_| Err(dropped()))
    }
}

/// The batch of a scheduled flush until the flush takes it: dropped
/// before that (the task never ran), it answers every queued command with
/// an error and lets the next command schedule a flush again.
struct Unflushed(Option<Arc<Batcher>>);

impl Unflushed {
    /// Takes the queue: the commands still wanted and their replies.
    fn take(&mut self) -> (Vec<Cmd>, Vec<Reply>) {
        let Some(batcher) = self.0.take() else {
            return (Vec::new(), Vec::new());
        };
        let mut queue = batcher.queue();
        queue.flush_scheduled = false;
        let commands = std::mem::take(&mut queue.commands);
        let replies = std::mem::take(&mut queue.replies);
        drop(queue);
        // An operation that gave up before the write does not want its
        // command sent.
        commands
            .into_iter()
            .zip(replies)
            .filter(|(_, reply)| !reply.is_closed())
            .unzip()
    }
}

impl Drop for Unflushed {
    fn drop(&mut self) {
        for reply in self.take().1 {
            let _ = reply.send(Err(dropped()));
        }
    }
}

/// Lets the operations ready to run queue their commands, then writes the
/// queue as one pipeline and answers each command.
async fn flush(mut batch: Unflushed, mut node: Node) {
    tokio::task::yield_now().await;
    let (commands, replies) = batch.take();
    match commands.len() {
        0 => {}
        1 => {
            let result = node.send(&commands[0]).await;
            let _ = replies.into_iter().next().map(|reply| reply.send(result));
        }
        count => {
            let mut pipeline = Pipeline::with_capacity(count);
            for cmd in commands {
                pipeline.add_command(cmd);
            }
            let result = node.send_pipeline(&pipeline, count).await;
            answer(replies, result, count);
        }
    }
}

/// Answers each command of a batch of `count` with its reply, or all with
/// the batch's error.
fn answer(replies: Vec<Reply>, result: Result<Vec<Value>, RedisError>, count: usize) {
    let values = match result {
        Ok(values) if values.len() == count => values,
        Ok(values) => {
            let e = RedisError::from((
                redis::ErrorKind::Client,
                "a pipelined batch got the wrong number of replies",
                format!("{} replies for {count} commands", values.len()),
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    for (reply, value) in replies.into_iter().zip(values) {
        let _ = reply.send(Ok(value));
    }
}

/// The error of a command whose batch was dropped unanswered (its runtime
/// shut down before or while the batch was written).
fn dropped() -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the batch carrying this command was dropped",
    )
    .into()
}
