//! Fine-grained settings: the reference's `--settings-json` keys with our defaults.
//!
//! `Settings::default()` holds the code defaults of the C++ reference (not the stale values
//! of its CONFIGURATION.md). Reading and exporting the JSON file lives here too; applying
//! settings to sockets and timers is the engine's business.

/// All tunable values. Field comments name the JSON key under `tunneling.proxy.`.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `default_bind_address`: source listen host when no `-b`.
    pub default_bind_address: String,
    /// `endpoint_format`: region → host, `%s` replaced by the region.
    pub endpoint_format: String,
    /// `region_endpoint_overrides.<region>`: per-region host.
    pub region_endpoint_overrides: Vec<(String, String)>,
    /// `message.data_length_size`: must be 2.
    pub data_length_size: usize,
    /// `message.data_frame_max_size`: exported for compatibility, unused.
    pub data_frame_max_size: usize,
    /// `message.max_payload_size`: DATA chunk size, ≤ 64512.
    pub max_payload_size: usize,
    /// `message.max_size`: largest protobuf message accepted.
    pub max_size: usize,
    /// `tcp.connection_retry_count`: destination connect retries, source bind retries; -1 = forever.
    pub tcp_connection_retry_count: i64,
    /// `tcp.connection_retry_delay_ms`.
    pub tcp_connection_retry_delay_ms: u64,
    /// `tcp.read_buffer_size`: per-connection read chunk.
    pub tcp_read_buffer_size: usize,
    /// `tcp.write_buffer_size`: per-connection bound on bytes waiting for the local socket.
    pub tcp_write_buffer_size: usize,
    /// `tcp.max_active_connections`: per service.
    pub tcp_max_active_connections: usize,
    /// `websocket.ping_period_ms`.
    pub ws_ping_period_ms: u64,
    /// `websocket.retry_delay_ms`: first reconnect delay.
    pub ws_retry_delay_ms: u64,
    /// `websocket.retry_max_delay_ms` (ours): cap of the exponential backoff.
    pub ws_retry_max_delay_ms: u64,
    /// `websocket.connect_retry_count`: -1 = forever; 4xx is never retried.
    pub ws_connect_retry_count: i64,
    /// `websocket.reconnect_on_data_error`: reconnect (true) or exit after a session error.
    pub ws_reconnect_on_data_error: bool,
    /// `websocket.subprotocol`: offered in `Sec-WebSocket-Protocol`.
    pub ws_subprotocol: String,
    /// `websocket.max_frame_size`: largest WebSocket frame accepted.
    pub ws_max_frame_size: usize,
    /// `websocket.write_buffer_size`: bound on bytes queued towards the tunnel.
    pub ws_write_buffer_size: usize,
    /// `websocket.read_buffer_size`: WebSocket read buffer.
    pub ws_read_buffer_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_bind_address: "localhost".into(),
            endpoint_format: "data.tunneling.iot.%s.amazonaws.com".into(),
            region_endpoint_overrides: vec![
                (
                    "cn-north-1".into(),
                    "data.tunneling.iot.cn-north-1.amazonaws.com.cn".into(),
                ),
                (
                    "cn-northwest-1".into(),
                    "data.tunneling.iot.cn-northwest-1.amazonaws.com.cn".into(),
                ),
            ],
            data_length_size: 2,
            data_frame_max_size: 65538,
            max_payload_size: 64512,
            max_size: 65536,
            tcp_connection_retry_count: 5,
            tcp_connection_retry_delay_ms: 2500,
            tcp_read_buffer_size: 131076,
            tcp_write_buffer_size: 131076,
            tcp_max_active_connections: 128,
            ws_ping_period_ms: 20000,
            ws_retry_delay_ms: 2500,
            ws_retry_max_delay_ms: 60000,
            ws_connect_retry_count: -1,
            ws_reconnect_on_data_error: true,
            ws_subprotocol: crate::protocol::SUBPROTOCOL_V3.into(),
            ws_max_frame_size: 131076,
            ws_write_buffer_size: 131076,
            ws_read_buffer_size: 131076,
        }
    }
}
