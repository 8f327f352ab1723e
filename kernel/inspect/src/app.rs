//! The inspector's state and key handling. No terminal and no sockets
//! here: keys come in as [`Key`], kernel answers as [`Response`], events as
//! [`EventLine`]; what the app wants from the kernel goes out as
//! [`Request`]s collected with [`App::take_requests`]. So all of it is
//! tested without a terminal or a kernel.
//!
//! Panes with an input line have two modes. Typing mode: characters edit
//! the input, Enter submits it, Esc leaves typing mode. Command mode: single
//! keys act (`/` starts typing, `q` or Esc quits). The memory pane starts in
//! typing mode, the object browser in command mode.

use std::collections::VecDeque;

use batos_protocol::TOPIC_STATE;

use super::source::{first_ref, Detail, EventLine, Hit, ObjectView, Request, Response};
use super::spec::{Origin, PaneKind, Spec, SpecError};

/// Most events kept by the event pane.
pub const EVENT_CAPACITY: usize = 500;
/// How far PageUp/PageDown move in lists.
const PAGE: usize = 10;
/// How far PageUp/PageDown scroll the memory detail text.
const TEXT_PAGE: u16 = 5;

/// A key, as far as the inspector cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Enter / Return.
    Enter,
    /// Backspace.
    Backspace,
    /// Delete.
    Delete,
    /// Left arrow.
    Left,
    /// Right arrow.
    Right,
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
    /// Page up.
    PageUp,
    /// Page down.
    PageDown,
    /// Home.
    Home,
    /// End.
    End,
    /// Tab.
    Tab,
    /// Shift-Tab.
    BackTab,
    /// Escape.
    Esc,
    /// Ctrl-C: quit from anywhere.
    Interrupt,
}

/// A one-line text input with a cursor (counted in characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Input {
    text: String,
    cursor: usize,
}

impl Input {
    /// An input holding `text`, cursor at the end.
    pub fn with_text(text: &str) -> Input {
        Input {
            text: text.to_string(),
            cursor: text.chars().count(),
        }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether there is no text.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Empties the input.
    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
    }

    /// Applies an editing key; false if the key does not edit text.
    pub fn edit(&mut self, key: Key) -> bool {
        let len = self.text.chars().count();
        match key {
            Key::Char(c) => {
                let at = self.byte_index(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            Key::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.remove_at(self.cursor);
            }
            Key::Delete if self.cursor < len => self.remove_at(self.cursor),
            Key::Left => self.cursor = self.cursor.saturating_sub(1),
            Key::Right => self.cursor = (self.cursor + 1).min(len),
            Key::Home => self.cursor = 0,
            Key::End => self.cursor = len,
            Key::Backspace | Key::Delete => {}
            _ => return false,
        }
        true
    }

    fn remove_at(&mut self, char_index: usize) {
        let at = self.byte_index(char_index);
        self.text.remove(at);
    }

    fn byte_index(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }
}

/// The status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What to show.
    pub text: String,
    /// Shown as an error.
    pub error: bool,
}

/// State of the memory search pane.
#[derive(Debug, Clone, Default)]
pub struct MemoryPane {
    /// The query being typed.
    pub input: Input,
    /// Typing mode.
    pub editing: bool,
    /// The last search's hits, best first.
    pub hits: Vec<Hit>,
    /// Index of the selected hit.
    pub selected: usize,
    /// The selected hit's detail, once loaded.
    pub detail: Option<Detail>,
    /// Why the selected hit's detail could not be loaded.
    pub detail_error: Option<String>,
    /// Lines scrolled in the detail text.
    pub detail_scroll: u16,
    /// The query the hits answer.
    pub searched: Option<String>,
    /// A search is on its way.
    pub searching: bool,
    detail_pending: Option<u64>,
}

impl MemoryPane {
    /// The selected hit.
    pub fn selected_hit(&self) -> Option<&Hit> {
        self.hits.get(self.selected)
    }

    /// Whether the selected hit's detail is on its way.
    pub fn detail_loading(&self) -> bool {
        self.detail_pending.is_some() && self.detail_pending == self.selected_hit().map(|h| h.chunk)
    }
}

/// A load the object browser is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingLoad {
    /// The target as requested.
    target: String,
    /// The object to remember in history once the load succeeds.
    push: Option<u64>,
}

/// State of the object browser pane.
#[derive(Debug, Clone, Default)]
pub struct ObjectPane {
    /// The oid or root name being typed.
    pub input: Input,
    /// Typing mode.
    pub editing: bool,
    /// The object shown.
    pub view: Option<ObjectView>,
    /// Index of the selected slot.
    pub selected: usize,
    /// Objects to go back to, most recent last.
    pub history: Vec<u64>,
    pending: Option<PendingLoad>,
    /// The target of a refresh on its way (after an event for the object shown).
    refreshing: Option<String>,
}

impl ObjectPane {
    /// What is being loaded, if anything.
    pub fn loading(&self) -> Option<&str> {
        self.pending.as_ref().map(|p| p.target.as_str())
    }
}

/// State of the event pane.
#[derive(Debug, Clone, Default)]
pub struct EventsPane {
    /// The last events, newest at the back.
    pub lines: VecDeque<EventLine>,
    /// How many lines the view is scrolled back from the newest (0 follows).
    pub scroll: usize,
}

/// The whole inspector.
#[derive(Debug)]
pub struct App {
    /// The pane spec in use.
    pub spec: Spec,
    /// The focused pane.
    pub focus: PaneKind,
    /// The memory search pane.
    pub memory: MemoryPane,
    /// The object browser.
    pub objects: ObjectPane,
    /// The event pane.
    pub events: EventsPane,
    /// The status line, if any.
    pub status: Option<Status>,
    /// The commands endpoint.
    pub endpoint: String,
    /// The events endpoint.
    pub events_endpoint: String,
    in_flight: usize,
    outbox: Vec<Request>,
    quit: bool,
    browser_started: bool,
}

impl App {
    /// A fresh inspector: the built-in panes until `genesis_obj.ui_code`
    /// has been read (the first request), focus on the memory query.
    pub fn new(endpoint: &str, events_endpoint: &str) -> App {
        let mut spec = Spec::builtin();
        spec.origin = Origin::Loading;
        let focus = spec.panes.first().map_or(PaneKind::Memory, |p| p.kind());
        let mut app = App {
            spec,
            focus,
            memory: MemoryPane {
                editing: true,
                ..MemoryPane::default()
            },
            objects: ObjectPane::default(),
            events: EventsPane::default(),
            status: None,
            endpoint: endpoint.to_string(),
            events_endpoint: events_endpoint.to_string(),
            in_flight: 0,
            outbox: Vec::new(),
            quit: false,
            browser_started: false,
        };
        app.request(Request::Spec);
        app
    }

    /// Whether the user asked to quit.
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Requests made since the last call, in order.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.outbox)
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the focused pane is in typing mode.
    pub fn is_typing(&self) -> bool {
        match self.focus {
            PaneKind::Memory => self.memory.editing,
            PaneKind::Objects => self.objects.editing,
            PaneKind::Events => false,
        }
    }

    fn request(&mut self, request: Request) {
        self.in_flight += 1;
        self.outbox.push(request);
    }

    fn info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: true,
        });
    }

    // -- keys ---------------------------------------------------------------

    /// Handles one key press.
    pub fn handle_key(&mut self, key: Key) {
        match key {
            Key::Interrupt => self.quit = true,
            Key::Tab => self.cycle_focus(true),
            Key::BackTab => self.cycle_focus(false),
            _ => match self.focus {
                PaneKind::Memory => self.memory_key(key),
                PaneKind::Objects => self.objects_key(key),
                PaneKind::Events => self.events_key(key),
            },
        }
    }

    /// Moves focus to the next (or previous) pane of the spec.
    fn cycle_focus(&mut self, forward: bool) {
        let kinds: Vec<PaneKind> = self.spec.panes.iter().map(|p| p.kind()).collect();
        let Some(here) = kinds.iter().position(|k| *k == self.focus) else {
            self.focus = kinds.first().copied().unwrap_or(self.focus);
            return;
        };
        let n = kinds.len();
        let next = if forward {
            (here + 1) % n
        } else {
            (here + n - 1) % n
        };
        self.focus = kinds[next];
    }

    /// Keys every pane's command mode shares: quit, and digits to jump to
    /// a pane. True if the key was one of them.
    fn common_command(&mut self, key: Key) -> bool {
        match key {
            Key::Char('q') | Key::Esc => self.quit = true,
            Key::Char(d @ '1'..='9') => {
                let index = d as usize - '1' as usize;
                if let Some(pane) = self.spec.panes.get(index) {
                    self.focus = pane.kind();
                }
            }
            _ => return false,
        }
        true
    }

    fn memory_key(&mut self, key: Key) {
        if self.memory.editing {
            match key {
                Key::Enter => self.run_search(),
                Key::Esc => self.memory.editing = false,
                Key::Up => self.move_hit(-1),
                Key::Down => self.move_hit(1),
                other => {
                    self.memory.input.edit(other);
                }
            }
            return;
        }
        if self.common_command(key) {
            return;
        }
        match key {
            Key::Char('/' | 'i') => self.memory.editing = true,
            Key::Char('r') => self.run_search(),
            Key::Up | Key::Char('k') => self.move_hit(-1),
            Key::Down | Key::Char('j') => self.move_hit(1),
            Key::Home => self.move_hit(isize::MIN),
            Key::End => self.move_hit(isize::MAX),
            Key::PageDown => {
                self.memory.detail_scroll = self.memory.detail_scroll.saturating_add(TEXT_PAGE)
            }
            Key::PageUp => {
                self.memory.detail_scroll = self.memory.detail_scroll.saturating_sub(TEXT_PAGE)
            }
            Key::Enter | Key::Char('o') => self.open_hit(),
            _ => {}
        }
    }

    fn objects_key(&mut self, key: Key) {
        if self.objects.editing {
            match key {
                Key::Enter => self.load_from_input(),
                Key::Esc => self.objects.editing = false,
                Key::Backspace if self.objects.input.is_empty() => self.go_back(),
                Key::Up => self.move_slot(-1),
                Key::Down => self.move_slot(1),
                other => {
                    self.objects.input.edit(other);
                }
            }
            return;
        }
        if self.common_command(key) {
            return;
        }
        match key {
            Key::Char('/' | 'i' | ':') => self.objects.editing = true,
            Key::Up | Key::Char('k') => self.move_slot(-1),
            Key::Down | Key::Char('j') => self.move_slot(1),
            Key::PageUp => self.move_slot(-(PAGE as isize)),
            Key::PageDown => self.move_slot(PAGE as isize),
            Key::Home => self.move_slot(isize::MIN),
            Key::End => self.move_slot(isize::MAX),
            Key::Enter | Key::Right | Key::Char('l') => self.follow_selected(),
            Key::Backspace | Key::Left | Key::Char('h') => self.go_back(),
            Key::Char('r') => self.reload_object(),
            _ => {}
        }
    }

    fn events_key(&mut self, key: Key) {
        if self.common_command(key) {
            return;
        }
        let newest_back = self.events.lines.len().saturating_sub(1);
        let scroll = &mut self.events.scroll;
        match key {
            Key::Up | Key::Char('k') => *scroll = (*scroll + 1).min(newest_back),
            Key::Down | Key::Char('j') => *scroll = scroll.saturating_sub(1),
            Key::PageUp => *scroll = (*scroll + PAGE).min(newest_back),
            Key::PageDown => *scroll = scroll.saturating_sub(PAGE),
            Key::Home => *scroll = newest_back,
            Key::End | Key::Char('G') => *scroll = 0,
            Key::Char('c') => {
                *scroll = 0;
                self.events.lines.clear();
            }
            _ => {}
        }
    }

    // -- memory actions -----------------------------------------------------

    fn run_search(&mut self) {
        let query = self.memory.input.text().trim().to_string();
        if query.is_empty() {
            self.memory.editing = true;
            self.error("type a query first");
            return;
        }
        self.memory.editing = false;
        self.memory.searching = true;
        let limit = self.spec.search_limit();
        self.info(format!("searching for {query:?}…"));
        self.request(Request::Search { query, limit });
    }

    /// Moves the hit selection by `delta` (clamped) and asks for the new
    /// hit's detail.
    fn move_hit(&mut self, delta: isize) {
        let Some(next) = moved(self.memory.selected, delta, self.memory.hits.len()) else {
            return;
        };
        if next != self.memory.selected {
            self.memory.selected = next;
            self.memory.detail_scroll = 0;
            self.request_detail();
        }
    }

    fn request_detail(&mut self) {
        let Some(chunk) = self.memory.selected_hit().map(|h| h.chunk) else {
            return;
        };
        let shown = self.memory.detail.as_ref().map(|d| d.oid);
        if shown == Some(chunk) || self.memory.detail_pending == Some(chunk) {
            return;
        }
        self.memory.detail_pending = Some(chunk);
        self.memory.detail_error = None;
        self.request(Request::Detail { chunk });
    }

    /// Opens the selected hit's object in the object browser.
    fn open_hit(&mut self) {
        let Some(chunk) = self.memory.selected_hit().map(|h| h.chunk) else {
            return;
        };
        if self.spec.pane(PaneKind::Objects).is_none() {
            self.error("this ui_code has no object browser");
            return;
        }
        self.focus = PaneKind::Objects;
        self.load_object(chunk.to_string(), true);
    }

    // -- object browser actions ---------------------------------------------

    fn load_from_input(&mut self) {
        let target = self.objects.input.text().trim().to_string();
        self.objects.editing = false;
        if target.is_empty() {
            return;
        }
        self.objects.input.clear();
        self.load_object(target, true);
    }

    /// Asks for `target`; with `remember`, the object shown now goes on the
    /// history once the new one has loaded.
    fn load_object(&mut self, target: String, remember: bool) {
        let push = if remember {
            self.objects.view.as_ref().map(|v| v.oid)
        } else {
            None
        };
        self.info(format!("loading {target}…"));
        self.objects.pending = Some(PendingLoad {
            target: target.clone(),
            push,
        });
        self.request(Request::Object { target });
    }

    fn move_slot(&mut self, delta: isize) {
        let count = self.objects.view.as_ref().map_or(0, |v| v.slots.len());
        if let Some(next) = moved(self.objects.selected, delta, count) {
            self.objects.selected = next;
        }
    }

    fn follow_selected(&mut self) {
        let Some(view) = &self.objects.view else {
            return;
        };
        let Some((name, value)) = view.slots.get(self.objects.selected) else {
            return;
        };
        match first_ref(value) {
            Some(oid) => self.load_object(oid.to_string(), true),
            None => {
                let text = format!("slot {name} holds no reference");
                self.error(text);
            }
        }
    }

    fn go_back(&mut self) {
        match self.objects.history.pop() {
            Some(oid) => self.load_object(oid.to_string(), false),
            None => self.error("no previous object"),
        }
    }

    fn reload_object(&mut self) {
        match self.objects.view.as_ref().map(|v| v.oid) {
            Some(oid) => self.load_object(oid.to_string(), false),
            None => {
                let start = self.spec.start().unwrap_or("genesis_obj").to_string();
                self.load_object(start, false);
            }
        }
    }

    // -- answers and events -------------------------------------------------

    /// Applies a kernel answer.
    pub fn handle_response(&mut self, response: Response) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match response {
            Response::Spec(result) => self.spec_loaded(result),
            Response::Search { query, result } => self.search_done(query, result),
            Response::Detail { chunk, result } => self.detail_done(chunk, result),
            Response::Object { target, result } => self.object_done(target, result),
        }
    }

    fn spec_loaded(&mut self, result: Result<Option<rmpv::Value>, String>) {
        let (spec, problem) = match result {
            Ok(ui_code) => {
                let (spec, err) = Spec::resolve(ui_code.as_ref());
                (
                    spec,
                    err.map(|e: SpecError| format!("genesis_obj.ui_code ignored: {e}")),
                )
            }
            Err(err) => (
                Spec::builtin(),
                Some(format!("cannot read genesis_obj.ui_code: {err}")),
            ),
        };
        self.apply_spec(spec);
        if let Some(problem) = problem {
            self.error(problem);
        }
    }

    /// Switches to `spec`, keeping each pane's state and the focus when the
    /// focused pane is still shown; opens the browser's start object once.
    pub fn apply_spec(&mut self, spec: Spec) {
        self.spec = spec;
        if self.spec.pane(self.focus).is_none() {
            if let Some(first) = self.spec.panes.first() {
                self.focus = first.kind();
            }
        }
        self.events
            .lines
            .retain(|line| self.spec.shows_topic(&line.topic));
        self.events.scroll = self.events.scroll.min(self.events.lines.len());
        if !self.browser_started && self.objects.view.is_none() && self.objects.pending.is_none() {
            if let Some(start) = self.spec.start().map(str::to_string) {
                self.browser_started = true;
                self.load_object(start, false);
            }
        }
    }

    fn search_done(&mut self, query: String, result: Result<Vec<Hit>, String>) {
        self.memory.searching = false;
        match result {
            Ok(hits) => {
                self.info(format!("{} hits for {query:?}", hits.len()));
                self.memory.hits = hits;
                self.memory.selected = 0;
                self.memory.detail = None;
                self.memory.detail_error = None;
                self.memory.detail_pending = None;
                self.memory.detail_scroll = 0;
                self.memory.searched = Some(query);
                self.request_detail();
            }
            Err(err) => self.error(format!("search failed: {err}")),
        }
    }

    fn detail_done(&mut self, chunk: u64, result: Result<Detail, String>) {
        if self.memory.detail_pending == Some(chunk) {
            self.memory.detail_pending = None;
        }
        if self.memory.selected_hit().map(|h| h.chunk) != Some(chunk) {
            return; // the selection moved on
        }
        match result {
            Ok(detail) => {
                self.memory.detail = Some(detail);
                self.memory.detail_error = None;
            }
            Err(err) => {
                self.memory.detail = None;
                self.memory.detail_error = Some(err);
            }
        }
    }

    fn object_done(&mut self, target: String, result: Result<ObjectView, String>) {
        let requested = self
            .objects
            .pending
            .as_ref()
            .is_some_and(|p| p.target == target);
        let refresh = !requested && self.objects.refreshing.as_deref() == Some(target.as_str());
        if refresh {
            self.objects.refreshing = None;
        }
        let current = self.objects.view.as_ref().map(|v| v.oid.to_string());
        let still_shown = current.as_deref() == Some(target.as_str());
        if !(requested || (refresh && still_shown)) {
            return; // superseded by a later load
        }
        let pending = if requested {
            self.objects.pending.take()
        } else {
            None
        };
        match result {
            Ok(view) => self.show_object(view, pending.and_then(|p| p.push), requested),
            Err(err) => {
                if requested {
                    self.error(format!("cannot load {target}: {err}"));
                }
            }
        }
    }

    fn show_object(&mut self, view: ObjectView, push: Option<u64>, announce: bool) {
        if let Some(previous) = push.filter(|p| *p != view.oid) {
            self.objects.history.push(previous);
        }
        let same = self.objects.view.as_ref().map(|v| v.oid) == Some(view.oid);
        self.objects.selected = if same {
            self.objects
                .selected
                .min(view.slots.len().saturating_sub(1))
        } else {
            0
        };
        if announce {
            let name = view.name.clone().unwrap_or_else(|| "object".into());
            self.info(format!("{name} @{}: {} slots", view.oid, view.slots.len()));
        }
        self.objects.view = Some(view);
    }

    /// Takes an event from the feed: refreshes the object shown if it
    /// changed, and keeps the event if the event pane shows its topic; true
    /// if it kept it (the screen changed).
    pub fn handle_event(&mut self, line: EventLine) -> bool {
        self.refresh_if_shown(&line);
        if !self.spec.shows_topic(&line.topic) && self.spec.origin != Origin::Loading {
            return false;
        }
        self.events.lines.push_back(line);
        if self.events.lines.len() > EVENT_CAPACITY {
            self.events.lines.pop_front();
        }
        if self.events.scroll > 0 {
            // Keep a scrolled-back view still while new lines arrive.
            self.events.scroll = (self.events.scroll + 1).min(self.events.lines.len() - 1);
        }
        true
    }

    fn refresh_if_shown(&mut self, line: &EventLine) {
        let shown = self.objects.view.as_ref().map(|v| v.oid);
        let busy = self.objects.pending.is_some() || self.objects.refreshing.is_some();
        if line.topic != TOPIC_STATE || busy {
            return;
        }
        if let Some(oid) = shown.filter(|oid| line.oid == Some(*oid)) {
            let target = oid.to_string();
            self.objects.refreshing = Some(target.clone());
            self.request(Request::Object { target });
        }
    }

    /// The event feed failed.
    pub fn feed_failed(&mut self, why: &str) {
        self.error(why.to_string());
    }
}

/// `index` moved by `delta` within `0..len` (saturating); `None` if empty.
fn moved(index: usize, delta: isize, len: usize) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let target = if delta >= 0 {
        index.saturating_add(delta.unsigned_abs())
    } else {
        index.saturating_sub(delta.unsigned_abs())
    };
    Some(target.min(len - 1))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rmpv::Value;

    use super::*;
    use crate::source::HitKind;

    fn app() -> App {
        let mut app = App::new("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556");
        assert_eq!(app.take_requests(), vec![Request::Spec]);
        app
    }

    /// An app whose spec has been read (none on genesis): the built-in panes.
    fn ready_app() -> App {
        let mut app = app();
        app.handle_response(Response::Spec(Ok(None)));
        assert_eq!(
            app.take_requests(),
            vec![Request::Object {
                target: "genesis_obj".into()
            }]
        );
        app
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            app.handle_key(Key::Char(c));
        }
    }

    fn hit(chunk: u64) -> Hit {
        Hit {
            chunk,
            source: format!("doc{chunk}.txt"),
            score: 1.0,
            snippet: "a **b** c".into(),
            kind: HitKind::Chunk,
        }
    }

    fn object(oid: u64, slots: Vec<(&str, Value)>) -> ObjectView {
        ObjectView {
            oid,
            name: None,
            slots: slots.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            parents: Vec::new(),
            methods: Vec::new(),
        }
    }

    fn oref(oid: u64) -> Value {
        Value::Map(vec![(Value::from("$ref"), Value::from(oid))])
    }

    fn event(topic: &str, oid: u64) -> EventLine {
        EventLine {
            at: Duration::ZERO,
            topic: topic.into(),
            oid: Some(oid),
            text: "set x".into(),
        }
    }

    #[test]
    fn input_edits_at_the_cursor() {
        let mut input = Input::with_text("héllo");
        assert!(input.edit(Key::Left));
        assert!(input.edit(Key::Backspace));
        assert_eq!(input.text(), "hélo");
        assert!(input.edit(Key::Home));
        assert!(input.edit(Key::Delete));
        assert!(input.edit(Key::Char('y')));
        assert_eq!((input.text(), input.cursor()), ("yélo", 1));
        assert!(input.edit(Key::End));
        assert!(!input.edit(Key::Enter));
        assert!(input.edit(Key::Backspace));
        assert_eq!(input.text(), "yél");
    }

    #[test]
    fn tab_cycles_focus_both_ways() {
        let mut app = ready_app();
        assert_eq!(app.focus, PaneKind::Memory);
        app.handle_key(Key::Tab);
        assert_eq!(app.focus, PaneKind::Objects);
        app.handle_key(Key::Tab);
        assert_eq!(app.focus, PaneKind::Events);
        app.handle_key(Key::Tab);
        assert_eq!(app.focus, PaneKind::Memory);
        app.handle_key(Key::BackTab);
        assert_eq!(app.focus, PaneKind::Events);
    }

    #[test]
    fn q_types_while_typing_and_quits_otherwise() {
        let mut app = ready_app();
        assert!(app.is_typing(), "the memory pane starts in typing mode");
        typed(&mut app, "quiz");
        assert!(!app.should_quit());
        assert_eq!(app.memory.input.text(), "quiz");
        app.handle_key(Key::Esc);
        assert!(!app.should_quit(), "Esc first leaves typing mode");
        app.handle_key(Key::Char('q'));
        assert!(app.should_quit());

        let mut app = ready_app();
        app.handle_key(Key::Esc);
        app.handle_key(Key::Esc);
        assert!(app.should_quit(), "Esc in command mode quits");

        let mut app = ready_app();
        typed(&mut app, "x");
        app.handle_key(Key::Interrupt);
        assert!(app.should_quit(), "Ctrl-C quits even while typing");
    }

    #[test]
    fn enter_searches_with_the_spec_limit_and_shows_the_first_detail() {
        let mut app = ready_app();
        app.handle_key(Key::Enter);
        assert!(app.take_requests().is_empty(), "an empty query is not sent");
        assert!(app.status.as_ref().is_some_and(|s| s.error));

        typed(&mut app, "  zebra stripes ");
        app.handle_key(Key::Enter);
        assert_eq!(
            app.take_requests(),
            vec![Request::Search {
                query: "zebra stripes".into(),
                limit: 20
            }]
        );
        assert!(!app.is_typing(), "Enter leaves typing mode");
        app.handle_response(Response::Search {
            query: "zebra stripes".into(),
            result: Ok(vec![hit(10), hit(11)]),
        });
        assert_eq!(app.take_requests(), vec![Request::Detail { chunk: 10 }]);
        assert!(app.memory.detail_loading());

        app.handle_key(Key::Down);
        assert_eq!(app.memory.selected, 1);
        assert_eq!(app.take_requests(), vec![Request::Detail { chunk: 11 }]);
        // A late answer for the old selection is ignored.
        app.handle_response(Response::Detail {
            chunk: 10,
            result: Err("late".into()),
        });
        assert!(app.memory.detail_error.is_none());
        app.handle_key(Key::Down);
        assert_eq!(app.memory.selected, 1, "clamped at the last hit");
        assert!(app.take_requests().is_empty());

        app.handle_key(Key::Char('/'));
        assert!(app.is_typing());
        assert_eq!(
            app.memory.input.text(),
            "  zebra stripes ",
            "the query is kept"
        );
    }

    #[test]
    fn search_errors_go_to_the_status_line() {
        let mut app = ready_app();
        typed(&mut app, "zebra");
        app.handle_key(Key::Enter);
        app.take_requests();
        app.handle_response(Response::Search {
            query: "zebra".into(),
            result: Err("no reply within 5000 ms".into()),
        });
        let status = app.status.clone().expect("status");
        assert!(
            status.error && status.text.contains("no reply"),
            "{status:?}"
        );
        assert_eq!(
            app.in_flight(),
            1,
            "the object browser's start load is still out"
        );
    }

    #[test]
    fn the_browser_follows_references_and_goes_back() {
        let mut app = ready_app();
        app.handle_key(Key::Tab);
        app.handle_response(Response::Object {
            target: "genesis_obj".into(),
            result: Ok(object(
                3,
                vec![
                    ("a", Value::from(1)),
                    ("parent*", Value::Array(vec![oref(2)])),
                ],
            )),
        });
        assert!(!app.is_typing(), "the browser starts in command mode");
        app.handle_key(Key::Enter);
        assert!(app.take_requests().is_empty(), "slot a holds no reference");
        app.handle_key(Key::Down);
        app.handle_key(Key::Enter);
        assert_eq!(
            app.take_requests(),
            vec![Request::Object { target: "2".into() }]
        );
        app.handle_response(Response::Object {
            target: "2".into(),
            result: Ok(object(2, vec![])),
        });
        assert_eq!(app.objects.history, vec![3]);
        assert_eq!(app.objects.selected, 0);

        app.handle_key(Key::Backspace);
        assert_eq!(
            app.take_requests(),
            vec![Request::Object { target: "3".into() }]
        );
        app.handle_response(Response::Object {
            target: "3".into(),
            result: Ok(object(3, vec![])),
        });
        assert!(
            app.objects.history.is_empty(),
            "going back does not grow history"
        );
    }

    #[test]
    fn the_browser_loads_typed_targets_and_backspace_on_empty_input_goes_back() {
        let mut app = ready_app();
        app.handle_key(Key::Tab);
        app.handle_response(Response::Object {
            target: "genesis_obj".into(),
            result: Ok(object(3, vec![])),
        });
        app.handle_key(Key::Char('/'));
        typed(&mut app, "traits_obj");
        app.handle_key(Key::Enter);
        assert_eq!(
            app.take_requests(),
            vec![Request::Object {
                target: "traits_obj".into()
            }]
        );
        assert!(app.objects.input.is_empty());
        app.handle_response(Response::Object {
            target: "traits_obj".into(),
            result: Ok(object(1, vec![])),
        });
        app.handle_key(Key::Char('/'));
        app.handle_key(Key::Backspace);
        assert_eq!(
            app.take_requests(),
            vec![Request::Object { target: "3".into() }]
        );

        // A failed load keeps the object shown and reports.
        app.handle_response(Response::Object {
            target: "3".into(),
            result: Err("no_such_object: 3".into()),
        });
        assert_eq!(app.objects.view.as_ref().map(|v| v.oid), Some(1));
        assert!(app.status.as_ref().is_some_and(|s| s.error));
    }

    #[test]
    fn events_are_kept_newest_last_and_refresh_the_object_shown() {
        let mut app = ready_app();
        app.handle_response(Response::Object {
            target: "genesis_obj".into(),
            result: Ok(object(3, vec![])),
        });
        app.handle_event(event("uvm_state_update", 9));
        assert!(app.take_requests().is_empty());
        app.handle_event(event("uvm_state_update", 3));
        assert_eq!(
            app.take_requests(),
            vec![Request::Object { target: "3".into() }]
        );
        app.handle_event(event("uvm_state_update", 3));
        assert!(app.take_requests().is_empty(), "one refresh at a time");
        app.handle_response(Response::Object {
            target: "3".into(),
            result: Ok(object(3, vec![("new", Value::from(1))])),
        });
        assert_eq!(app.objects.view.as_ref().map(|v| v.slots.len()), Some(1));

        for i in 0..EVENT_CAPACITY + 5 {
            app.handle_event(event("cycle_update", i as u64));
        }
        assert_eq!(app.events.lines.len(), EVENT_CAPACITY);
        assert_eq!(
            app.events.lines.back().and_then(|l| l.oid),
            Some(EVENT_CAPACITY as u64 + 4)
        );
    }

    #[test]
    fn the_event_pane_scrolls_and_filters_by_topic() {
        let mut app = ready_app();
        app.handle_key(Key::Char('3'));
        assert_eq!(app.focus, PaneKind::Memory, "digits type while typing");
        app.handle_key(Key::Esc);
        app.handle_key(Key::Char('3'));
        assert_eq!(app.focus, PaneKind::Events);
        for i in 0..5 {
            app.handle_event(event("uvm_state_update", i));
        }
        app.handle_key(Key::Up);
        app.handle_key(Key::Up);
        assert_eq!(app.events.scroll, 2);
        app.handle_event(event("uvm_state_update", 9));
        assert_eq!(app.events.scroll, 3, "a scrolled-back view holds still");
        app.handle_key(Key::End);
        assert_eq!(app.events.scroll, 0);

        let mut spec = Spec::builtin();
        spec.panes.retain(|p| p.kind() != PaneKind::Events);
        app.apply_spec(spec);
        assert_eq!(
            app.focus,
            PaneKind::Memory,
            "focus leaves a pane that is gone"
        );
        app.handle_event(event("uvm_state_update", 1));
        assert!(app.events.lines.is_empty());
    }

    #[test]
    fn a_ui_code_replaces_the_panes_and_keeps_typed_text() {
        let mut app = app();
        typed(&mut app, "zeb");
        let ui_code = Value::Map(vec![
            (Value::from("version"), Value::from(1)),
            (Value::from("title"), Value::from("Custom")),
            (
                Value::from("panes"),
                Value::Array(vec![Value::Map(vec![
                    (Value::from("kind"), Value::from("memory_search")),
                    (Value::from("limit"), Value::from(3)),
                ])]),
            ),
        ]);
        app.handle_response(Response::Spec(Ok(Some(ui_code))));
        assert_eq!(app.spec.origin, Origin::UiCode);
        assert_eq!(app.spec.title, "Custom");
        assert_eq!(app.memory.input.text(), "zeb");
        assert!(
            app.take_requests().is_empty(),
            "no object browser, no start load"
        );
        typed(&mut app, "ra");
        app.handle_key(Key::Enter);
        assert_eq!(
            app.take_requests(),
            vec![Request::Search {
                query: "zebra".into(),
                limit: 3
            }]
        );

        let mut app = self::app();
        app.handle_response(Response::Spec(Ok(Some(Value::from("garbage")))));
        assert_eq!(app.spec.origin, Origin::BuiltIn);
        assert!(app
            .status
            .as_ref()
            .is_some_and(|s| s.error && s.text.contains("ignored")));
    }
}
