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
//! batch. Nothing is re-sent.

use std::sync::{Arc, Mutex};

use redis::{Cmd, Pipeline, RedisError, Value};
use tokio::sync::oneshot;

use super::topology::Node;

/// The commands waiting for the next write on one connection.
#[derive(Default)]
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    commands: Vec<Cmd>,
    replies: Vec<oneshot::Sender<Result<Value, RedisError>>>,
    /// A flush is spawned and has not taken the queue yet.
    flush_scheduled: bool,
}

impl Batcher {
    /// Queues `cmd` for the next write on `node` and waits for its reply.
    pub(crate) async fn send(
        self: &Arc<Self>,
        node: &Node,
        runtime: &tokio::runtime::Handle,
        cmd: Cmd,
    ) -> Result<Value, RedisError> {
        let (reply, replied) = oneshot::channel();
        let spawn = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.commands.push(cmd);
            queue.replies.push(reply);
            !std::mem::replace(&mut queue.flush_scheduled, true)
        };
        if spawn {
            runtime.spawn(flush(Arc::clone(self), node.clone()));
        }
        replied.await.unwrap_or_else(|_| Err(dropped()))
    }
}

/// Lets the operations ready to run queue their commands, then writes the
/// queue as one pipeline and answers each command.
async fn flush(batcher: Arc<Batcher>, mut node: Node) {
    tokio::task::yield_now().await;
    let (commands, replies) = {
        let mut queue = batcher.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.flush_scheduled = false;
        (
            std::mem::take(&mut queue.commands),
            std::mem::take(&mut queue.replies),
        )
    };
    if let [cmd] = commands.as_slice() {
        let result = node.send(cmd).await;
        let _ = replies.into_iter().next().map(|reply| reply.send(result));
        return;
    }
    let count = commands.len();
    let mut pipeline = Pipeline::with_capacity(count);
    for cmd in commands {
        pipeline.add_command(cmd);
    }
    match node.send_pipeline(&pipeline, count).await {
        Ok(values) if values.len() == count => {
            for (reply, value) in replies.into_iter().zip(values) {
                let _ = reply.send(Ok(value));
            }
        }
        Ok(values) => {
            let e = RedisError::from((
                redis::ErrorKind::Client,
                "a pipelined batch got the wrong number of replies",
                format!("{} replies for {count} commands", values.len()),
            ));
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The error of an operation whose batch was dropped unanswered (the
/// runtime shutting down).
fn dropped() -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the batch carrying this command was dropped",
    )
    .into()
}
