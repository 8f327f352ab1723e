//! `batos inspect`: the Memory Inspector, an interactive terminal UI on a
//! running kernel. It searches memory, browses objects and follows the
//! event feed, with the panes `genesis_obj.ui_code` declares (or built-in
//! ones).
//!
//! - [`spec`]: the pane spec (`ui_code`) and its built-in default;
//! - [`app`]: state and key handling (no terminal, no sockets);
//! - [`source`]: requests on a worker thread, the event feed on another;
//! - [`ui`]: drawing with ratatui.
//!
//! The only crate that names ratatui. It talks to the kernel only through
//! `batos-client` (requests and the event subscription).
//!
//! This crate owns the terminal: raw mode and the alternate screen are
//! entered once and always left, on return, on error and on panic.

pub mod app;
pub mod source;
pub mod spec;
pub mod ui;

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;

use self::app::{App, Key};
use self::source::{EventFeed, FeedItem, Response, Worker};

/// How long the loop waits for a key before looking at the channels.
const TICK: Duration = Duration::from_millis(50);
/// Most events taken from the feed per tick, so a flood cannot starve keys.
const EVENTS_PER_TICK: usize = 1000;

/// Runs the inspector against the kernel at `endpoint` (commands) and
/// `events_endpoint` (PUB). Each request waits at most `timeout_ms` for its
/// reply.
pub fn run(endpoint: &str, events_endpoint: &str, timeout_ms: i32) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("batos inspect is interactive: run it in a terminal");
    }
    let worker = Worker::start(endpoint, timeout_ms)?;
    let feed = EventFeed::connect(events_endpoint)?;
    let mut app = App::new(endpoint, events_endpoint);
    let mut screen = Screen::enter()?;
    let outcome = event_loop(&mut screen.terminal, &mut app, &worker, &feed);
    drop(screen);
    outcome
}

/// The terminal in raw mode on the alternate screen; dropping it restores
/// the terminal (ratatui's panic hook does the same on panic).
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                // Raw mode may be on even though the rest failed.
                ratatui::restore();
                Err(anyhow::Error::new(err).context("cannot set up the terminal"))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        ratatui::restore();
    }
}

/// Draws, reads keys and passes requests, answers and events between the
/// app and the threads until the app quits.
fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    worker: &Worker,
    feed: &EventFeed,
) -> anyhow::Result<()> {
    let mut dirty = true;
    while !app.should_quit() {
        dispatch(app, worker);
        if dirty {
            terminal
                .draw(|frame| ui::draw(frame, app))
                .context("cannot draw")?;
            dirty = false;
        }
        if event::poll(TICK).context("cannot read the terminal")? {
            dirty |= on_terminal_event(app, event::read().context("cannot read the terminal")?);
        }
        dirty |= drain(app, worker, feed);
    }
    Ok(())
}

/// Hands the app's new requests to the worker; a request the worker can no
/// longer take is answered as failed right away.
fn dispatch(app: &mut App, worker: &Worker) {
    for request in app.take_requests() {
        if let Err(request) = worker.submit(request) {
            app.handle_response(Response::failed(request, "the request thread stopped"));
        }
    }
}

/// Feeds ready answers and events to the app; true if any arrived.
fn drain(app: &mut App, worker: &Worker, feed: &EventFeed) -> bool {
    let mut changed = false;
    while let Some(response) = worker.try_recv() {
        app.handle_response(response);
        changed = true;
    }
    for _ in 0..EVENTS_PER_TICK {
        match feed.try_recv() {
            Some(FeedItem::Event(line)) => changed |= app.handle_event(line),
            Some(FeedItem::Error(why)) => {
                app.feed_failed(&why);
                changed = true;
            }
            None => break,
        }
    }
    changed
}

/// Applies one terminal event; true if the screen must be redrawn.
fn on_terminal_event(app: &mut App, event: Event) -> bool {
    match event {
        Event::Key(key) => {
            if let Some(key) = map_key(key) {
                app.handle_key(key);
            }
            true
        }
        Event::Resize(..) => true,
        _ => false,
    }
}

/// A crossterm key press as a [`Key`]; `None` for releases and keys the
/// inspector does not use.
fn map_key(key: KeyEvent) -> Option<Key> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Key::Interrupt,
        KeyCode::Char(_) if ctrl || alt => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Delete => Key::Delete,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Tab if key.modifiers.contains(KeyModifiers::SHIFT) => Key::BackTab,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Esc => Key::Esc,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossterm_keys_map_to_app_keys() {
        let press = |code, modifiers| map_key(KeyEvent::new(code, modifiers));
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::Interrupt)
        );
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::NONE),
            Some(Key::Char('c'))
        );
        assert_eq!(
            press(KeyCode::Char('Q'), KeyModifiers::SHIFT),
            Some(Key::Char('Q'))
        );
        assert_eq!(press(KeyCode::Char('x'), KeyModifiers::ALT), None);
        assert_eq!(
            press(KeyCode::BackTab, KeyModifiers::SHIFT),
            Some(Key::BackTab)
        );
        assert_eq!(press(KeyCode::Tab, KeyModifiers::SHIFT), Some(Key::BackTab));
        assert_eq!(press(KeyCode::Tab, KeyModifiers::NONE), Some(Key::Tab));
        assert_eq!(press(KeyCode::F(5), KeyModifiers::NONE), None);
    }
}
