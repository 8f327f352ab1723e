//! The kernel library's error type.

/// Why the kernel could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The image could not be opened.
    #[error("image: {0}")]
    Image(#[from] batos_actors::ImageError),
    /// The object space failed.
    #[error(transparent)]
    Actors(#[from] batos_actors::ActorError),
    /// A ZeroMQ socket could not be set up.
    #[error("bridge: {0}")]
    Bridge(String),
    /// An endpoint is not allowed (e.g. non-loopback without CURVE).
    #[error("{0}")]
    Refused(String),
    /// An I/O error (metrics listener, files).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<crate::config::ConfigError> for KernelError {
    fn from(err: crate::config::ConfigError) -> Self {
        KernelError::Config(err.0)
    }
}
