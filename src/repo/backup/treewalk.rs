//! Turns the flat, depth-first entry stream of a rustic_core `ReadSource` into enter /
//! item / leave events, inventing directory nodes for the ancestors of the backup path
//! the way rustic_core's archiver does (so snapshots look the same whichever path wrote
//! them).

use std::{
    ffi::OsString,
    path::{Component, PathBuf},
};

use rustic_core::repofile::{Metadata, Node, NodeType};

/// One step of the walk.
#[derive(Debug)]
pub(crate) enum Event<O> {
    /// A directory starts; its entries follow until the matching `Leave`.
    Enter { path: PathBuf, node: Node },
    /// The current directory ends.
    Leave,
    /// A non-directory entry of the current directory.
    Item {
        path: PathBuf,
        node: Node,
        open: Option<O>,
    },
}

/// Adapter from `(dir path, node, open)` items (directories carry their own path,
/// other entries their parent's) to [`Event`]s.
///
/// NB: the source is pulled only when the next event needs it, never ahead: a source
/// may block in `next()` until an earlier item has been processed (a stream's metadata
/// files are produced only after the stream was read to its end).
pub(crate) struct TreeEvents<I, O> {
    iter: I,
    path: PathBuf,
    item: Option<(PathBuf, Node, Option<O>)>,
    exhausted: bool,
}

impl<I, O> TreeEvents<I, O>
where
    I: Iterator<Item = (PathBuf, Node, Option<O>)>,
{
    pub(crate) fn new(iter: I) -> Self {
        Self {
            iter,
            path: PathBuf::new(),
            item: None,
            exhausted: false,
        }
    }

    /// Leaves the innermost named directory; false at the top.
    fn pop(&mut self) -> bool {
        let mut comps = self.path.components();
        while let Some(c) = comps.next_back() {
            if matches!(c, Component::Normal(_) | Component::Prefix(_)) {
                self.path = comps.collect();
                return true;
            }
        }
        false
    }
}

impl<I, O> Iterator for TreeEvents<I, O>
where
    I: Iterator<Item = (PathBuf, Node, Option<O>)>,
{
    type Item = Event<O>;

    fn next(&mut self) -> Option<Event<O>> {
        if self.item.is_none() && !self.exhausted {
            self.item = self.iter.next();
            self.exhausted = self.item.is_none();
        }
        let Some((path, node, _)) = &self.item else {
            return self.pop().then_some(Event::Leave);
        };
        let Ok(missing) = path.strip_prefix(&self.path) else {
            self.pop();
            return Some(Event::Leave);
        };
        let missing: Vec<Component<'_>> = missing.components().collect();
        let is_dir = node.is_dir();
        let full = path.clone();
        for comp in missing {
            self.path.push(comp);
            if let Component::Normal(name) = comp {
                if is_dir && full == self.path {
                    let (path, node, _) = self.item.take().expect("peeked above");
                    return Some(Event::Enter { path, node });
                }
                let name: OsString = name.to_os_string();
                let meta = Metadata {
                    mode: Some(0o755),
                    ..Default::default()
                };
                let node = Node::new_node(&name, NodeType::Dir, meta);
                return Some(Event::Enter {
                    path: self.path.clone(),
                    node,
                });
            }
        }
        let (path, node, open) = self.item.take().expect("peeked above");
        Some(Event::Item { path, node, open })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(p: &str) -> (PathBuf, Node, Option<()>) {
        let name = std::path::Path::new(p).file_name().unwrap();
        (
            p.into(),
            Node::new_node(name, NodeType::Dir, Metadata::default()),
            None,
        )
    }

    fn file(parent: &str, name: &str) -> (PathBuf, Node, Option<()>) {
        let n = Node::new_node(name.as_ref(), NodeType::File, Metadata::default());
        (parent.into(), n, Some(()))
    }

    fn render(items: Vec<(PathBuf, Node, Option<()>)>) -> Vec<String> {
        TreeEvents::new(items.into_iter())
            .map(|e| match e {
                Event::Enter { node, .. } => format!("+{}", node.name),
                Event::Leave => "-".into(),
                Event::Item { node, .. } => node.name,
            })
            .collect()
    }

    #[test]
    fn absolute_path_gets_ancestor_dirs() {
        let ev = render(vec![
            dir("/a/b"),
            file("/a/b", "f"),
            dir("/a/b/c"),
            file("/a/b/c", "g"),
        ]);
        assert_eq!(ev, ["+a", "+b", "f", "+c", "g", "-", "-", "-"]);
    }

    #[test]
    fn siblings_close_the_previous_dir() {
        let ev = render(vec![
            dir("x"),
            dir("x/y"),
            file("x/y", "1"),
            dir("x/z"),
            file("x", "2"),
        ]);
        assert_eq!(ev, ["+x", "+y", "1", "-", "+z", "-", "2", "-"]);
    }
}
