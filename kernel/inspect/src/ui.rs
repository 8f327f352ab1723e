//! Drawing the inspector with ratatui: a header (title, about line, where
//! the pane spec came from), a tab bar, the focused pane, a status line and
//! a footer with the pane's help and its keys. Reads the [`App`], never
//! changes it.
//!
//! Text from the image (snippets, slot values, spec strings) is cleaned of
//! control characters before it is drawn.

use std::fmt::Write as _;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use rmpv::Value;

use super::app::{App, Input, MemoryPane, ObjectPane};
use super::source::{
    field, ref_oid, Detail, EventLine, Hit, HitKind, MethodInfo, MethodText, ObjectView,
};
use super::spec::{Origin, PaneKind};
use batos_protocol::{TOPIC_CYCLE, TOPIC_STATE};

/// Most characters of a snippet drawn.
const MAX_SNIPPET: usize = 300;
/// Most characters of a slot value drawn.
const MAX_VALUE: usize = 300;
/// Most characters of a string inside a compact value.
const MAX_STRING: usize = 120;
/// Deepest nesting drawn inside a compact value.
const MAX_DEPTH: usize = 3;
/// Widest slot-name column.
const MAX_NAME: usize = 24;
/// Longest source line shown (the rest is cut).
const MAX_SOURCE_LINE: usize = 200;
/// Most summary links shown before the chain box stops growing.
const MAX_CHAIN_ROWS: usize = 8;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [header, tabs, main, status, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    draw_tabs(frame, tabs, app);
    match app.focus {
        PaneKind::Memory => draw_memory(frame, main, &app.memory),
        PaneKind::Objects => draw_objects(frame, main, &app.objects),
        PaneKind::Events => draw_events(frame, main, app),
    }
    draw_status(frame, status, app);
    draw_footer(frame, footer, app);
}

// ---------------------------------------------------------------------------
// Chrome
// ---------------------------------------------------------------------------

fn draw_header(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let [top, about] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let origin = app.spec.origin.label();
    let [title_area, origin_area] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(width(origin) + 1)]).areas(top);
    let title = Span::styled(
        one_line(&app.spec.title, 200),
        Style::default().add_modifier(Modifier::BOLD),
    );
    frame.render_widget(Paragraph::new(Line::from(title)), title_area);
    let origin_style = match app.spec.origin {
        Origin::UiCode => Style::default().fg(Color::Green),
        Origin::BuiltIn => Style::default().fg(Color::Yellow),
        Origin::Loading => dim(),
    };
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(origin, origin_style)).right_aligned()),
        origin_area,
    );
    frame.render_widget(
        Paragraph::new(Span::styled(one_line(&app.spec.about, 400), dim())),
        about,
    );
}

fn draw_tabs(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let endpoints = format!("commands {}  events {}", app.endpoint, app.events_endpoint);
    let [tabs_area, endpoints_area] = Layout::horizontal([
        Constraint::Min(1),
        Constraint::Length(width(&endpoints) + 1),
    ])
    .areas(area);
    let mut spans = Vec::new();
    for (i, pane) in app.spec.panes.iter().enumerate() {
        let style = if pane.kind() == app.focus {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(
            format!(" {} {} ", i + 1, one_line(&pane.title, 40)),
            style,
        ));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), tabs_area);
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(endpoints, dim())).right_aligned()),
        endpoints_area,
    );
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let waiting = match app.in_flight() {
        0 => String::new(),
        1 => "waiting for 1 reply…".to_string(),
        n => format!("waiting for {n} replies…"),
    };
    let [text_area, waiting_area] =
        Layout::horizontal([Constraint::Min(1), Constraint::Length(width(&waiting) + 1)])
            .areas(area);
    if let Some(status) = &app.status {
        let style = if status.error {
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::default().fg(Color::Green)
        };
        frame.render_widget(
            Paragraph::new(Span::styled(one_line(&status.text, 400), style)),
            text_area,
        );
    }
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(waiting, dim())).right_aligned()),
        waiting_area,
    );
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let help = app
        .spec
        .pane(app.focus)
        .map(|p| one_line(&p.help, 400))
        .unwrap_or_default();
    let lines = vec![
        Line::from(Span::styled(help, dim().add_modifier(Modifier::ITALIC))),
        Line::from(Span::styled(
            key_help(app),
            Style::default().fg(Color::Cyan),
        )),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

/// The keys of the focused pane in its current mode.
pub fn key_help(app: &App) -> &'static str {
    match (app.focus, app.is_typing()) {
        (PaneKind::Memory, true) => {
            "typing: Enter search · ↑/↓ hits · Esc stop typing · Tab/Shift-Tab panes · Ctrl-C quit"
        }
        (PaneKind::Memory, false) => {
            "/ type query · ↑/↓ hits · PgUp/PgDn scroll text · Enter open in browser · r search again · Tab panes · q quit"
        }
        (PaneKind::Objects, true) => {
            "typing: Enter load · Backspace on empty input: back · Esc stop typing · Tab panes · Ctrl-C quit"
        }
        (PaneKind::Objects, false) => {
            "↑/↓ slots · Enter follow reference · Backspace back · / type oid or root · r reload · Tab panes · q quit"
        }
        (PaneKind::Events, _) => {
            "↑/↓ PgUp/PgDn scroll · End follow newest · c clear · Tab panes · q quit"
        }
    }
}

/// A bordered one-line input; the cursor is shown while typing.
fn draw_input(frame: &mut Frame<'_>, area: Rect, title: &str, input: &Input, editing: bool) {
    let border = if editing {
        Style::default().fg(Color::Yellow)
    } else {
        Style::default()
    };
    let block = Block::bordered()
        .title(title.to_string())
        .border_style(border);
    let inner = block.inner(area);
    // Scroll horizontally so the cursor stays visible.
    let room = usize::from(inner.width.saturating_sub(1));
    let skip = input.cursor().saturating_sub(room);
    let shown: String = input
        .text()
        .chars()
        .skip(skip)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let content = if shown.is_empty() && !editing {
        Line::from(Span::styled("press / to type", dim()))
    } else {
        Line::from(shown)
    };
    frame.render_widget(Paragraph::new(content).block(block), area);
    if editing && inner.width > 0 && inner.height > 0 {
        let offset = u16::try_from(input.cursor() - skip).unwrap_or(u16::MAX);
        let x = inner
            .x
            .saturating_add(offset)
            .min(inner.right().saturating_sub(1));
        frame.set_cursor_position((x, inner.y));
    }
}

// ---------------------------------------------------------------------------
// Memory pane
// ---------------------------------------------------------------------------

fn draw_memory(frame: &mut Frame<'_>, area: Rect, memory: &MemoryPane) {
    let [input_area, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    draw_input(
        frame,
        input_area,
        " Query (Enter searches) ",
        &memory.input,
        memory.editing,
    );
    let [list_area, detail_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
    draw_hits(frame, list_area, memory);
    draw_detail(frame, detail_area, memory);
}

fn draw_hits(frame: &mut Frame<'_>, area: Rect, memory: &MemoryPane) {
    let title = match &memory.searched {
        Some(query) => format!(" {} hits for {} ", memory.hits.len(), one_line(query, 40)),
        None => " Hits ".to_string(),
    };
    let block = Block::bordered().title(title);
    if memory.hits.is_empty() {
        let text = if memory.searching {
            "searching…"
        } else if memory.searched.is_some() {
            "no hits"
        } else {
            "type a query and press Enter"
        };
        frame.render_widget(Paragraph::new(Span::styled(text, dim())).block(block), area);
        return;
    }
    let items: Vec<ListItem<'static>> = memory.hits.iter().map(hit_item).collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut state = ListState::default().with_selected(Some(memory.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

/// A hit: score and source, then the snippet with its matches in bold.
fn hit_item(hit: &Hit) -> ListItem<'static> {
    let mut head = vec![
        Span::styled(format!("{:>7.2}  ", hit.score), dim()),
        Span::styled(
            one_line(&hit.source, 120),
            Style::default()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
    ];
    if hit.kind == HitKind::Summary {
        head.push(Span::styled(
            " [summary]",
            Style::default().fg(Color::Magenta),
        ));
    }
    ListItem::new(Text::from(vec![
        Line::from(head),
        snippet_line(&hit.snippet),
    ]))
}

/// A snippet on one line: `**match**` markers become bold, whitespace is
/// collapsed.
pub fn snippet_line(snippet: &str) -> Line<'static> {
    let text = one_line(snippet, MAX_SNIPPET);
    let mut spans = vec![Span::raw("  ")];
    for (i, part) in text.split("**").enumerate() {
        if part.is_empty() {
            continue;
        }
        let style = if i % 2 == 1 {
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(part.to_string(), style));
    }
    Line::from(spans)
}

fn draw_detail(frame: &mut Frame<'_>, area: Rect, memory: &MemoryPane) {
    let Some(hit) = memory.selected_hit() else {
        frame.render_widget(Block::bordered().title(" Detail "), area);
        return;
    };
    // The detail of this hit only: a reply for the one selected before may
    // still be on screen while this hit's request is in flight.
    let detail = memory.detail.as_ref().filter(|d| d.oid == hit.chunk);
    let chain_rows = detail.map_or(1, |d| {
        d.chain.len().max(1) + usize::from(d.chain_error.is_some())
    });
    let chain_height = u16::try_from(chain_rows.min(MAX_CHAIN_ROWS)).unwrap_or(1) + 2;
    let [text_area, chain_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(chain_height)]).areas(area);

    let mut title = format!(" @{} · {}", hit.chunk, one_line(&hit.source, 60));
    let mut body = Text::from(Span::styled("loading…", dim()));
    let mut chain: Vec<Line<'static>> = vec![Line::from(Span::styled("loading…", dim()))];
    if let Some(detail) = detail {
        if let Some(index) = detail.index {
            let _ = write!(title, " #{index}");
        }
        if let Some(tokens) = detail.token_count {
            let _ = write!(title, " · {tokens} tokens");
        }
        body = Text::from(clean_block(&detail.text));
        chain = chain_lines(detail);
    } else if let Some(err) = &memory.detail_error {
        body = Text::from(Span::styled(
            one_line(err, 400),
            Style::default().fg(Color::Red),
        ));
        chain = Vec::new();
    }
    title.push(' ');
    frame.render_widget(
        Paragraph::new(body)
            .block(Block::bordered().title(title))
            .wrap(Wrap { trim: false })
            .scroll((memory.detail_scroll, 0)),
        text_area,
    );
    frame.render_widget(
        Paragraph::new(chain).block(Block::bordered().title(" Summary chain (nearest first) ")),
        chain_area,
    );
}

fn chain_lines(detail: &Detail) -> Vec<Line<'static>> {
    let mut lines: Vec<Line<'static>> = detail
        .chain
        .iter()
        .map(|link| {
            let level = link.level.map_or("L?".to_string(), |l| format!("L{l}"));
            Line::from(vec![
                Span::styled(format!("{level:<4}"), Style::default().fg(Color::Magenta)),
                Span::styled(format!("@{:<8} ", link.oid), dim()),
                Span::raw(one_line(&link.first_line, 300)),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("not summarized yet", dim())));
    }
    if let Some(err) = &detail.chain_error {
        lines.push(Line::from(Span::styled(
            one_line(err, 300),
            Style::default().fg(Color::Red),
        )));
    }
    lines
}

// ---------------------------------------------------------------------------
// Object browser
// ---------------------------------------------------------------------------

fn draw_objects(frame: &mut Frame<'_>, area: Rect, objects: &ObjectPane) {
    let [input_area, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    draw_input(
        frame,
        input_area,
        " Object: oid or root name (Enter loads) ",
        &objects.input,
        objects.editing,
    );
    let Some(view) = &objects.view else {
        let text = match objects.loading() {
            Some(target) => format!("loading {}…", one_line(target, 80)),
            None => "no object loaded".to_string(),
        };
        frame.render_widget(
            Paragraph::new(Span::styled(text, dim())).block(Block::bordered()),
            body,
        );
        return;
    };
    let [slots_area, side] =
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
    draw_slots(frame, slots_area, view, objects);
    let parent_rows = u16::try_from(view.parents.len().clamp(1, 6)).unwrap_or(1);
    let [parents_area, rest] =
        Layout::vertical([Constraint::Length(parent_rows + 2), Constraint::Min(3)]).areas(side);
    draw_parents(frame, parents_area, view);
    // The selected slot, if it is a method that kept its source: show it.
    let selected = view.slots.get(objects.selected).map(|(name, _)| name);
    match selected.and_then(|name| Some((name, view.active_source(name)?))) {
        Some((name, (version, source))) => {
            let [methods_area, source_area] =
                Layout::vertical([Constraint::Percentage(35), Constraint::Min(3)]).areas(rest);
            draw_methods(frame, methods_area, view);
            draw_source(frame, source_area, name, version, source);
        }
        None => draw_methods(frame, rest, view),
    }
}

/// A method version's source, line by line (what fits).
fn draw_source(
    frame: &mut Frame<'_>,
    area: Rect,
    selector: &str,
    version: u64,
    source: &MethodText,
) {
    let title = format!(
        " Source: {} v{version} ({}) ",
        one_line(selector, 40),
        one_line(&source.language, 12)
    );
    let lines: Vec<Line<'static>> = source
        .text
        .lines()
        .take(usize::from(area.height))
        .map(|line| Line::from(one_line(&line.replace('\t', "    "), MAX_SOURCE_LINE)))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

fn draw_slots(frame: &mut Frame<'_>, area: Rect, view: &ObjectView, objects: &ObjectPane) {
    let name = view.name.as_deref().unwrap_or("object");
    let mut title = format!(" {name} @{} · {} slots", view.oid, view.slots.len());
    if !objects.history.is_empty() {
        let _ = write!(title, " · back: {}", objects.history.len());
    }
    if let Some(target) = objects.loading() {
        let _ = write!(title, " · loading {}…", one_line(target, 40));
    }
    title.push(' ');
    let block = Block::bordered().title(title);
    let name_width = view
        .slots
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_NAME);
    let items: Vec<ListItem<'static>> = view
        .slots
        .iter()
        .map(|(slot, value)| {
            ListItem::new(Line::from(vec![
                Span::styled(
                    format!("{:<name_width$}", one_line(slot, 80)),
                    Style::default().fg(Color::Cyan),
                ),
                Span::raw("  "),
                Span::raw(compact(value, MAX_VALUE)),
            ]))
        })
        .collect();
    if items.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("no slots", dim())).block(block),
            area,
        );
        return;
    }
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut state = ListState::default().with_selected(Some(objects.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_parents(frame: &mut Frame<'_>, area: Rect, view: &ObjectView) {
    let lines: Vec<Line<'static>> = if view.parents.is_empty() {
        vec![Line::from(Span::styled("none", dim()))]
    } else {
        view.parents
            .iter()
            .map(|oid| Line::from(format!("@{oid}")))
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Parents (parent*) ")),
        area,
    );
}

fn draw_methods(frame: &mut Frame<'_>, area: Rect, view: &ObjectView) {
    let lines: Vec<Line<'static>> = if view.methods.is_empty() {
        vec![Line::from(Span::styled("no methods of its own", dim()))]
    } else {
        view.methods.iter().map(method_line).collect()
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(" Methods (versions) "))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// `selector  v1 client 1a2b3c4d, v2 model 5e6f7a8b`.
fn method_line(method: &MethodInfo) -> Line<'static> {
    let versions = method
        .versions
        .iter()
        .map(|v| {
            let provenance = v.provenance.as_deref().unwrap_or("");
            let hash: String = v.hash.chars().take(8).collect();
            one_line(&format!("v{} {provenance} {hash}", v.version), 80)
        })
        .collect::<Vec<_>>()
        .join(", ");
    Line::from(vec![
        Span::styled(
            one_line(&method.selector, 60),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw("  "),
        Span::styled(versions, dim()),
    ])
}

// ---------------------------------------------------------------------------
// Event pane
// ---------------------------------------------------------------------------

fn draw_events(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let events = &app.events;
    let pane_title = app
        .spec
        .pane(PaneKind::Events)
        .map_or("Events", |p| p.title.as_str());
    let mut title = format!(
        " {}: {} events",
        one_line(pane_title, 40),
        events.lines.len()
    );
    if events.scroll > 0 {
        let _ = write!(title, " · {} newer below (End follows)", events.scroll);
    }
    title.push(' ');
    let block = Block::bordered().title(title);
    let height = usize::from(block.inner(area).height);
    let end = events.lines.len().saturating_sub(events.scroll);
    let start = end.saturating_sub(height);
    let lines: Vec<Line<'static>> = if events.lines.is_empty() {
        vec![Line::from(Span::styled(
            format!("waiting for events on {}", app.events_endpoint),
            dim(),
        ))]
    } else {
        events.lines.range(start..end).map(event_line).collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// `+   12.3s  uvm_state_update  @42       set mood  tx 7`.
fn event_line(event: &EventLine) -> Line<'static> {
    let topic_style = match event.topic.as_str() {
        TOPIC_STATE => Style::default().fg(Color::Cyan),
        TOPIC_CYCLE => Style::default().fg(Color::Magenta),
        _ => Style::default().fg(Color::Yellow),
    };
    let oid = event.oid.map(|o| format!("@{o}")).unwrap_or_default();
    Line::from(vec![
        Span::styled(format!("+{:>8.1}s  ", event.at.as_secs_f64()), dim()),
        Span::styled(format!("{:<17}", one_line(&event.topic, 40)), topic_style),
        Span::raw(format!("{oid:<10}")),
        Span::raw(one_line(&event.text, 300)),
    ])
}

// ---------------------------------------------------------------------------
// Text helpers
// ---------------------------------------------------------------------------

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// Width of a short text in cells (one per character; bounded).
fn width(text: &str) -> u16 {
    u16::try_from(text.chars().count()).unwrap_or(u16::MAX)
}

/// Text on one line: whitespace collapsed, control characters dropped, at
/// most `max` characters (then `…`).
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
        if out.len() > max * 4 {
            break;
        }
    }
    truncate(&out, max)
}

/// Multi-line text: lines kept, tabs expanded, other control characters dropped.
pub fn clean_block(text: &str) -> String {
    text.replace('\t', "    ")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// At most `max` characters, then `…`.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A value on one line: references as `@oid`, methods as `method vN`,
/// strings quoted, long values cut with `…`.
pub fn compact(value: &Value, max: usize) -> String {
    let mut out = String::new();
    write_compact(&mut out, value, 0, max);
    truncate(&out, max)
}

fn write_compact(out: &mut String, value: &Value, depth: usize, max: usize) {
    match value {
        Value::Nil => out.push_str("nil"),
        Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F32(f) => {
            let _ = write!(out, "{f}");
        }
        Value::F64(f) => {
            let _ = write!(out, "{f}");
        }
        Value::String(s) => match s.as_str() {
            Some(text) => {
                let _ = write!(out, "{:?}", truncate(text, MAX_STRING));
            }
            None => {
                let _ = write!(out, "<{} bytes, not UTF-8>", s.as_bytes().len());
            }
        },
        Value::Binary(bytes) => {
            let _ = write!(out, "<bin {} bytes>", bytes.len());
        }
        Value::Ext(ty, bytes) => {
            let _ = write!(out, "<ext {ty}: {} bytes>", bytes.len());
        }
        Value::Array(items) => write_array(out, items, depth, max),
        Value::Map(entries) => {
            if let Some(oid) = ref_oid(value) {
                let _ = write!(out, "@{oid}");
            } else if let Some(method) = field(value, "$method") {
                write_method(out, method);
            } else {
                write_map(out, entries, depth, max);
            }
        }
    }
}

fn write_array(out: &mut String, items: &[Value], depth: usize, max: usize) {
    if depth >= MAX_DEPTH && !items.is_empty() {
        let _ = write!(out, "[…{}]", items.len());
        return;
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if out.len() > max * 4 {
            out.push('…');
            break;
        }
        write_compact(out, item, depth + 1, max);
    }
    out.push(']');
}

fn write_map(out: &mut String, entries: &[(Value, Value)], depth: usize, max: usize) {
    if depth >= MAX_DEPTH && !entries.is_empty() {
        let _ = write!(out, "{{…{}}}", entries.len());
        return;
    }
    out.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if out.len() > max * 4 {
            out.push('…');
            break;
        }
        match key.as_str() {
            Some(k) => out.push_str(&one_line(k, 60)),
            None => write_compact(out, key, depth + 1, max),
        }
        out.push_str(": ");
        write_compact(out, value, depth + 1, max);
    }
    out.push('}');
}

fn write_method(out: &mut String, method: &Value) {
    let version = field(method, "version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let hash: String = field(method, "hash")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .chars()
        .take(8)
        .collect();
    let _ = write!(out, "method v{version} {hash}");
}

#[cfg(test)]
mod tests {
    use batos_object::value::string_map;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::app::Key;
    use crate::source::{Request, Response};

    #[test]
    fn values_are_compact() {
        let oref = string_map(vec![("$ref", Value::from(7))]);
        assert_eq!(compact(&oref, 100), "@7");
        assert_eq!(
            compact(
                &Value::Array(vec![oref.clone(), Value::Nil, Value::from("a\nb")]),
                100
            ),
            r#"[@7, nil, "a\nb"]"#
        );
        let method = string_map(vec![(
            "$method",
            string_map(vec![
                ("selector", Value::from("greet")),
                ("version", Value::from(2)),
                ("hash", Value::from("0123456789abcdef")),
            ]),
        )]);
        assert_eq!(compact(&method, 100), "method v2 01234567");
        assert_eq!(
            compact(
                &string_map(vec![("n", Value::from(1)), ("m", string_map(vec![]))]),
                100
            ),
            "{n: 1, m: {}}"
        );
        let long = Value::Array((0..1000).map(Value::from).collect());
        assert_eq!(compact(&long, 20).chars().count(), 21, "cut with …");
        assert_eq!(compact(&Value::Binary(vec![1, 2]), 100), "<bin 2 bytes>");
    }

    #[test]
    fn text_is_cleaned_for_the_screen() {
        assert_eq!(one_line("a \n b\u{1b}[2J  c", 100), "a b[2J c");
        assert_eq!(one_line("abcdef", 3), "abc…");
        assert_eq!(clean_block("x\ty\u{7}\nz"), "x    y\nz");
        let line = snippet_line("the **zebra**\n grazes");
        let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(text, "  the zebra grazes");
        assert!(line.spans[2].style.add_modifier.contains(Modifier::BOLD));
    }

    fn screen(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("test terminal");
        terminal.draw(|frame| draw(frame, app)).expect("draw");
        let buffer = terminal.backend().buffer();
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_pane_draws() {
        let mut app = App::new("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556");
        let text = screen(&app);
        assert!(text.contains("BAT OS Memory Inspector"), "{text}");
        assert!(text.contains("ui: loading"), "{text}");
        app.handle_response(Response::Spec(Ok(None)));
        assert!(screen(&app).contains("ui: built-in default"));
        for c in "zebra".chars() {
            app.handle_key(Key::Char(c));
        }
        assert!(screen(&app).contains("zebra"));
        app.handle_key(Key::Tab);
        assert!(screen(&app).contains("loading genesis_obj"));
        app.handle_key(Key::Tab);
        assert!(screen(&app).contains("waiting for events"));
    }

    #[test]
    fn the_detail_pane_never_shows_another_hits_text() {
        let mut app = App::new("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556");
        app.handle_response(Response::Spec(Ok(None)));
        for c in "zebra".chars() {
            app.handle_key(Key::Char(c));
        }
        app.handle_key(Key::Enter);
        let hit = |chunk: u64| Hit {
            chunk,
            source: format!("doc{chunk}.txt"),
            score: 1.0,
            snippet: "a zebra".into(),
            kind: HitKind::Chunk,
        };
        app.handle_response(Response::Search {
            query: "zebra".into(),
            result: Ok(vec![hit(10), hit(11)]),
        });
        app.handle_response(Response::Detail {
            chunk: 10,
            result: Ok(Detail {
                oid: 10,
                text: "the text of chunk ten".into(),
                token_count: Some(5),
                source: Some("doc10.txt".into()),
                index: Some(0),
                chain: Vec::new(),
                chain_error: None,
            }),
        });
        assert!(screen(&app).contains("the text of chunk ten"));
        app.handle_key(Key::Down);
        assert!(app.take_requests().contains(&Request::Detail { chunk: 11 }));
        let text = screen(&app);
        assert!(text.contains("@11"), "{text}");
        assert!(
            !text.contains("the text of chunk ten"),
            "hit 11 shows hit 10's text: {text}"
        );
    }
}
