//! Capturing what `tracing` printed during a test.

thread_local! {
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What `tracing` printed on the current thread since [`capture_logs`].
pub struct Logs(());

impl Logs {
    pub fn text(&self) -> String {
        LOGS.with(|l| String::from_utf8_lossy(&l.borrow()).into_owned())
    }
}

struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.with(|l| l.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures `tracing` events (INFO and up) emitted on this thread, which is
/// the test's own thread under `#[tokio::test]`.
///
/// One global subscriber serves every test: a scoped one (`set_default`)
/// races with other tests' threads registering the same callsites and can
/// miss events, since callsite interest is cached process-wide.
pub fn capture_logs() -> Logs {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    LOGS.with(|l| l.borrow_mut().clear());
    Logs(())
}
