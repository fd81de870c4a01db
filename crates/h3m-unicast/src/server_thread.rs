//! A server running on a thread of its own until it is told to stop: the
//! repair origin, the `/metrics` server and `h3m-recv --serve` each run one,
//! so that a slow client never delays the program's own work.

use tokio::sync::watch;

/// The thread of a running server and the switch that stops it. Dropping it
/// stops the server and waits for the thread.
#[derive(Debug)]
pub struct ServerThread {
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// A server thread that watches `stop`'s receiver and ends once it turns true.
    pub fn new(stop: watch::Sender<bool>, thread: std::thread::JoinHandle<()>) -> Self {
        ServerThread { stop: Some(stop), thread: Some(thread) }
    }

    /// Tells the server to stop and waits for its thread (once; later calls do nothing).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_ends_the_thread_once() {
        let (stop, mut stopped) = watch::channel(false);
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async { while !*stopped.borrow_and_update() && stopped.changed().await.is_ok() {} });
            done_tx.send(()).unwrap();
        });
        let mut server = ServerThread::new(stop, thread);
        server.stop();
        assert!(done.try_recv().is_ok(), "the thread ended before stop returned");
        server.stop();
        drop(server);
    }
}
