package logging

// SyncBuffer lets the external tests (package logging_test, which may
// import the middleware) collect log lines written from several goroutines.
type SyncBuffer = syncBuffer
