//! A remote OpenAI-compatible inference server as the model backend: vLLM,
//! llama.cpp's server, mistral.rs's server, LoRAX, or any server speaking
//! `POST /chat/completions`.
//!
//! Generation is greedy unless asked otherwise (`temperature` 0), streamed
//! by default (server-sent events: the time to first token is measured and
//! the deadline and cancellation are checked between chunks; dropping the
//! connection is how a server is told to stop). A request that fails before
//! any output (the connection, HTTP 429 or 5xx) is retried with exponential
//! backoff within the call's deadline, then reported as unreachable (the
//! kernel answers `unavailable`); one that fails mid-stream is not retried
//! (its partial output is not an answer). Persona experts map to names the
//! server knows: vLLM's `--lora-modules` and mistral.rs's adapters are
//! chosen by the request's `model`, LoRAX's by `adapter_id`. Grammars are
//! sent in the server's own field where it has one; whatever comes back
//! still goes through the kernel's audit.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::engine::{
    AdapterSpec, CallControl, Constraint, Engine, EngineError, EngineOutput, EngineRequest,
};

/// Where a grammar constraint goes in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrammarFormat {
    /// Not sent (the server has no grammar support the kernel can use).
    None,
    /// vLLM: `guided_regex` / `guided_grammar`.
    Vllm,
    /// mistral.rs's server: `grammar: {"type": "regex" | "lark", "value"}`.
    MistralRs,
}

impl GrammarFormat {
    /// From the configuration's name for it.
    pub fn parse(name: &str) -> Result<GrammarFormat, EngineError> {
        match name {
            "none" | "" => Ok(GrammarFormat::None),
            "vllm" => Ok(GrammarFormat::Vllm),
            "mistralrs" => Ok(GrammarFormat::MistralRs),
            other => Err(EngineError::Invalid(format!(
                "unknown remote grammar format {other:?} (expected \"none\", \"vllm\" or \"mistralrs\")"
            ))),
        }
    }
}

/// How an expert's adapter is named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertField {
    /// The adapter's name replaces `model` (vLLM, mistral.rs).
    Model,
    /// `adapter_id` beside `model` (LoRAX).
    AdapterId,
}

impl ExpertField {
    /// From the configuration's name for it.
    pub fn parse(name: &str) -> Result<ExpertField, EngineError> {
        match name {
            "model" => Ok(ExpertField::Model),
            "adapter_id" => Ok(ExpertField::AdapterId),
            other => Err(EngineError::Invalid(format!(
                "unknown remote expert field {other:?} (expected \"model\" or \"adapter_id\")"
            ))),
        }
    }
}

/// The server and how to talk to it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSpec {
    /// Base URL of the API, e.g. `http://127.0.0.1:8000/v1`.
    pub url: String,
    /// The model's name at the server; empty: the first one it lists.
    pub model: String,
    /// Sent as `Authorization: Bearer KEY` when present.
    pub api_key: Option<String>,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Retries of a request that failed before any output.
    pub retries: u32,
    /// The first retry's wait; each next one doubles it.
    pub retry_backoff: Duration,
    /// Stream the answer (server-sent events).
    pub stream: bool,
    /// Where grammars go.
    pub grammar: GrammarFormat,
    /// How experts are named.
    pub expert_field: ExpertField,
    /// Expert name → the server's name for its adapter.
    pub experts: BTreeMap<String, String>,
}

/// The remote backend.
pub struct RemoteEngine {
    spec: RemoteSpec,
    model: String,
    agent: ureq::Agent,
}

/// Longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest line of a streamed answer (one event).
const MAX_EVENT_BYTES: usize = 1 << 20;

impl RemoteEngine {
    /// Connects to the server: when no model is named, asks it which it
    /// serves (the server must be up); otherwise an unreachable server is
    /// only logged, and generation fails until it answers.
    pub fn connect(spec: RemoteSpec) -> Result<RemoteEngine, EngineError> {
        if !(spec.url.starts_with("http://") || spec.url.starts_with("https://")) {
            return Err(EngineError::Invalid(format!(
                "the remote inference url {:?} is not http:// or https://",
                spec.url
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(spec.connect_timeout)
            .build();
        let mut engine = RemoteEngine {
            model: spec.model.clone(),
            spec,
            agent,
        };
        match engine.served_models() {
            Ok(models) if engine.model.is_empty() => {
                engine.model = models.into_iter().next().ok_or_else(|| {
                    EngineError::Invalid(format!("{} lists no model", engine.endpoint("models")))
                })?;
            }
            Ok(models) => {
                if !models.contains(&engine.model) {
                    tracing::warn!(model = %engine.model, served = ?models, "the remote server does not list the configured model");
                }
            }
            Err(err) if engine.model.is_empty() => return Err(err),
            Err(err) => {
                tracing::warn!(error = %err, url = %engine.spec.url, "the remote inference server is not answering yet")
            }
        }
        Ok(engine)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.spec.url.trim_end_matches('/'))
    }

    fn authorized(&self, request: ureq::Request) -> ureq::Request {
        match &self.spec.api_key {
            Some(key) => request.set("Authorization", &format!("Bearer {key}")),
            None => request,
        }
    }

    /// The model ids the server lists (`GET /models`).
    fn served_models(&self) -> Result<Vec<String>, EngineError> {
        let request = self
            .authorized(self.agent.get(&self.endpoint("models")))
            .timeout(self.spec.connect_timeout * 2);
        let body: Value = request
            .call()
            .map_err(|e| backend("listing models", e))?
            .into_json()
            .map_err(|e| EngineError::Backend(format!("listing models: {e}")))?;
        Ok(body["data"]
            .as_array()
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The request body for `request`.
    fn body(&self, request: &EngineRequest) -> Result<Value, EngineError> {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature.unwrap_or(0.0),
            "stream": self.spec.stream,
        });
        if self.spec.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(expert) = &request.expert {
            let adapter = self.adapter(expert)?;
            match self.spec.expert_field {
                ExpertField::Model => body["model"] = json!(adapter),
                ExpertField::AdapterId => body["adapter_id"] = json!(adapter),
            }
        }
        match (&request.constraint, self.spec.grammar) {
            (None, _) | (Some(_), GrammarFormat::None) => {}
            (Some(Constraint::Regex(re)), GrammarFormat::Vllm) => body["guided_regex"] = json!(re),
            (Some(Constraint::Lark(g)), GrammarFormat::Vllm) => body["guided_grammar"] = json!(g),
            (Some(Constraint::Regex(re)), GrammarFormat::MistralRs) => {
                body["grammar"] = json!({"type": "regex", "value": re})
            }
            (Some(Constraint::Lark(g)), GrammarFormat::MistralRs) => {
                body["grammar"] = json!({"type": "lark", "value": g})
            }
        }
        Ok(body)
    }

    fn adapter(&self, expert: &str) -> Result<&str, EngineError> {
        self.spec.experts.get(expert).map(String::as_str).ok_or_else(|| {
            EngineError::Invalid(format!(
                "expert {expert:?} has no adapter on the remote server (map it in [inference] remote_experts)"
            ))
        })
    }

    /// Sends the request, retrying failures that happened before any output.
    fn send(&self, body: &Value, control: &CallControl) -> Result<ureq::Response, EngineError> {
        let mut wait = self.spec.retry_backoff;
        let mut attempt = 0;
        loop {
            if let Some(reason) = control.stop_reason() {
                return Err(EngineError::Cancelled(reason.into()));
            }
            let left = control.deadline.saturating_duration_since(Instant::now());
            let request = self
                .authorized(self.agent.post(&self.endpoint("chat/completions")))
                .timeout(left);
            let error = match request.send_json(body) {
                Ok(response) => return Ok(response),
                Err(err) => err,
            };
            let retryable = match &error {
                ureq::Error::Status(code, _) => *code == 429 || *code >= 500,
                ureq::Error::Transport(_) => true,
            };
            if !retryable {
                return Err(backend("generating", error));
            }
            if attempt >= self.spec.retries || Instant::now() + wait >= control.deadline {
                return Err(EngineError::Unreachable(
                    backend("generating", error).to_string(),
                ));
            }
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %error, "remote generation failed; retrying");
            std::thread::sleep(wait);
            wait = (wait * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    /// Reads a streamed answer: `data: {json}` events until `data: [DONE]`.
    fn read_stream(
        &self,
        response: ureq::Response,
        control: &CallControl,
        started: Instant,
    ) -> Result<EngineOutput, EngineError> {
        let mut reader = BufReader::new(response.into_reader());
        let mut text = String::new();
        let mut chunks = 0usize;
        let mut usage = None;
        let mut first_token = None;
        let mut line = Vec::new();
        loop {
            if let Some(reason) = control.stop_reason() {
                return Err(EngineError::Cancelled(reason.into()));
            }
            line.clear();
            let n = Read::take(&mut reader, MAX_EVENT_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| stream_error(e, control))?;
            if n == 0 {
                return Err(EngineError::Backend(
                    "the stream ended without [DONE]".into(),
                ));
            }
            if line.len() > MAX_EVENT_BYTES {
                return Err(EngineError::Backend(
                    "a streamed event is over 1 MiB".into(),
                ));
            }
            let Some(data) = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.trim_end().strip_prefix("data:"))
                .map(str::trim)
            else {
                continue; // blank lines, comments, `event:` lines
            };
            if data == "[DONE]" {
                break;
            }
            let event: Value = serde_json::from_str(data)
                .map_err(|e| EngineError::Backend(format!("a streamed event is not JSON: {e}")))?;
            if let Some(error) = event.get("error") {
                return Err(EngineError::Backend(format!("the server: {error}")));
            }
            if let Some(n) = event["usage"]["completion_tokens"].as_u64() {
                usage = Some(n as usize);
            }
            if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
                if !piece.is_empty() {
                    first_token.get_or_insert_with(|| started.elapsed());
                    chunks += 1;
                    text.push_str(piece);
                }
            }
        }
        Ok(EngineOutput {
            text,
            // Servers stream a token per event; their own count wins when given.
            tokens: usage.unwrap_or(chunks),
            first_token,
        })
    }

    fn read_whole(&self, response: ureq::Response) -> Result<EngineOutput, EngineError> {
        let body: Value = response
            .into_json()
            .map_err(|e| EngineError::Backend(format!("the answer is not JSON: {e}")))?;
        let text = body["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| {
                let body: String = body.to_string().chars().take(200).collect();
                EngineError::Backend(format!("no message in the answer: {body}"))
            })?
            .to_owned();
        let tokens = body["usage"]["completion_tokens"]
            .as_u64()
            .map(|n| n as usize)
            .unwrap_or_else(|| text.split_whitespace().count());
        Ok(EngineOutput {
            text,
            tokens,
            first_token: None,
        })
    }
}

fn backend(what: &str, error: ureq::Error) -> EngineError {
    match error {
        ureq::Error::Status(code, response) => {
            let detail = response.into_string().unwrap_or_default();
            let detail: String = detail.chars().take(300).collect();
            if code == 400 || code == 404 || code == 422 {
                EngineError::Invalid(format!("{what}: the server answered {code}: {detail}"))
            } else {
                EngineError::Backend(format!("{what}: the server answered {code}: {detail}"))
            }
        }
        ureq::Error::Transport(t) => EngineError::Backend(format!("{what}: {t}")),
    }
}

fn stream_error(error: std::io::Error, control: &CallControl) -> EngineError {
    match control.stop_reason() {
        Some(reason) => EngineError::Cancelled(reason.into()),
        None => EngineError::Backend(format!("reading the stream: {error}")),
    }
}

impl Engine for RemoteEngine {
    fn model_name(&self) -> String {
        self.model.clone()
    }

    fn generate(
        &self,
        request: &EngineRequest,
        control: &CallControl,
    ) -> Result<EngineOutput, EngineError> {
        let body = self.body(request)?;
        let started = Instant::now();
        let response = self.send(&body, control)?;
        if self.spec.stream {
            self.read_stream(response, control, started)
        } else {
            self.read_whole(response)
        }
    }

    /// An expert is usable when the server has an adapter for it; nothing
    /// is loaded here (the server holds its adapters).
    fn load_adapter(&self, adapter: &AdapterSpec) -> Result<(), EngineError> {
        self.adapter(&adapter.name).map(drop)
    }

    fn unload_adapter(&self, _name: &str) -> Result<(), EngineError> {
        Ok(())
    }

    /// The OpenAI API has no tokenizer endpoint: callers fall back to their
    /// approximate count.
    fn count_tokens(&self, _text: &str) -> Result<usize, EngineError> {
        Err(EngineError::Invalid(
            "a remote server's tokenizer is not reachable through the OpenAI API".into(),
        ))
    }

    /// Adapters live in the server's memory, not the kernel's.
    fn hot_cost(&self, _adapter_bytes: u64) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// Answers each connection with the next canned HTTP response and
    /// reports each request it read: its head and its body.
    fn canned(responses: Vec<String>) -> (String, mpsc::Receiver<(String, String)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    stream.read_exact(&mut byte).unwrap();
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                stream.read_exact(&mut body).unwrap();
                let _ = tx.send((head, String::from_utf8_lossy(&body).to_string()));
                stream.write_all(response.as_bytes()).unwrap();
            }
        });
        (url, rx)
    }

    fn http(status: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn spec(url: String) -> RemoteSpec {
        RemoteSpec {
            url,
            model: "served".into(),
            api_key: Some("sekret".into()),
            connect_timeout: Duration::from_secs(2),
            retries: 2,
            retry_backoff: Duration::from_millis(1),
            stream: true,
            grammar: GrammarFormat::Vllm,
            expert_field: ExpertField::Model,
            experts: BTreeMap::from([("BRICK".to_string(), "brick-lora".to_string())]),
        }
    }

    fn request(expert: Option<&str>) -> EngineRequest {
        EngineRequest {
            prompt: "hi".into(),
            expert: expert.map(str::to_owned),
            max_tokens: 8,
            constraint: Some(Constraint::Regex("[a-z]+".into())),
            temperature: None,
        }
    }

    /// One generation through a fresh engine on the server at `url`.
    fn generate(url: String, expert: Option<&str>) -> Result<EngineOutput, EngineError> {
        let engine = RemoteEngine {
            model: "served".into(),
            spec: spec(url),
            agent: ureq::agent(),
        };
        engine.generate(&request(expert), &CallControl::new(Duration::from_secs(10)))
    }

    const STREAM: &str = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n\n\
        : a comment\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"is\"}}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"completion_tokens\":3}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn a_stream_is_read_after_retrying_what_failed_before_any_output() {
        let (url, bodies) = canned(vec![
            http("503 Service Unavailable", "text/plain", "warming up"),
            http("429 Too Many Requests", "text/plain", "slow down"),
            http("200 OK", "text/event-stream", STREAM),
        ]);
        let out = generate(url, Some("BRICK")).unwrap();
        assert_eq!((out.text.as_str(), out.tokens), ("Paris", 3));
        assert!(out.first_token.is_some());
        let (head, body) = bodies.recv().unwrap();
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer sekret"),
            "the API key is sent: {head}"
        );
        let sent: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            sent["model"], "brick-lora",
            "the expert picks the server's adapter"
        );
        assert_eq!(sent["guided_regex"], "[a-z]+");
        assert_eq!(sent["temperature"], 0.0, "greedy unless asked");
        assert_eq!(sent["stream"], true);
        assert_eq!(bodies.iter().count(), 2, "three tries in all");
    }

    #[test]
    fn retries_stop_at_their_count_and_a_client_error_is_not_retried() {
        let (url, bodies) = canned(vec![
            http("500 Internal Server Error", "text/plain", "a"),
            http("500 Internal Server Error", "text/plain", "b"),
            http("500 Internal Server Error", "text/plain", "c"),
        ]);
        let err = generate(url, None).unwrap_err();
        assert!(
            matches!(&err, EngineError::Unreachable(m) if m.contains("500")),
            "{err}"
        );
        assert_eq!(bodies.iter().count(), 3);

        let (url, bodies) = canned(vec![http("400 Bad Request", "text/plain", "no such model")]);
        let err = generate(url, None).unwrap_err();
        assert!(
            matches!(&err, EngineError::Invalid(m) if m.contains("no such model")),
            "{err}"
        );
        assert_eq!(bodies.iter().count(), 1);
    }

    #[test]
    fn an_unmapped_expert_and_a_bad_url_are_clear_errors() {
        let err = generate("http://127.0.0.1:9/v1".into(), Some("ROBIN")).unwrap_err();
        assert!(err.to_string().contains("remote_experts"), "{err}");
        let err = RemoteEngine::connect(spec("ftp://x".into())).err().unwrap();
        assert!(err.to_string().contains("not http"), "{err}");
    }
}
