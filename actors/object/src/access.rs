//! Who may change what: the role a request runs with, and the rule every
//! change a client asks for (directly, or through a method it sent) must
//! pass. The kernel's own writes run as [`Role::Kernel`] and pass always.
//!
//! The rule, for a client (`read`, `write`, `admin`):
//! - `read` changes nothing: no slot, no object, no method.
//! - The kernel's objects (its bookkeeping roots, and the objects its
//!   services keep their structures in: the memory catalog's shards, trees
//!   and prototypes, the cycles) are the kernel's: no client writes or
//!   removes their slots. `admin` may add methods to the kernel's roots
//!   under selectors that name no data or primitive slot.
//! - Some kernel prototypes carry settings beside their machinery (a cycle
//!   state's `queries`): `admin` may change the settings, nobody the
//!   machinery.
//! - Built-in primitives (`clone`, `setSlot_value_`, ...) are never
//!   overwritten or removed.
//! - Roots change everyone's objects: installing a method on any root, and
//!   any change to `traits_obj`, takes `admin`; so do upgrade requests.

use crate::roots;
use crate::slot::{Primitive, Slot};
use crate::value::{Oid, PARENT_SLOT};

/// The rights a request runs with, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads and sends that change nothing.
    Read,
    /// Creates and changes the user's objects.
    Write,
    /// Also installs methods on roots, changes `traits_obj`, asks for
    /// upgrades and snapshots.
    Admin,
    /// The kernel's own services: no client ever holds it.
    Kernel,
}

impl Role {
    /// The roles a client can be given, by their configuration names.
    pub const CLIENT: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    /// The role's name (as in the configuration and in errors).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
            Role::Kernel => "kernel",
        }
    }

    /// A client role by name (`read`, `write`, `admin`).
    pub fn parse(name: &str) -> Option<Role> {
        Self::CLIENT.into_iter().find(|r| r.as_str() == name)
    }

    /// Refuses unless this role is at least `needed`; `what` names the action.
    pub fn require(self, needed: Role, what: &str) -> Result<(), String> {
        if self >= needed {
            Ok(())
        } else {
            Err(format!(
                "{what} takes the {} role; this client has {}",
                needed.as_str(),
                self.as_str()
            ))
        }
    }
}

/// One change to one existing object, as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Writes data slot `name`.
    Write(&'a str),
    /// Removes slot `name`.
    Remove(&'a str),
    /// Installs (or rolls back) method `selector`.
    Install(&'a str),
}

impl Change<'_> {
    fn name(self) -> &'static str {
        match self {
            Change::Write(_) => "writing",
            Change::Remove(_) => "removing",
            Change::Install(_) => "installing a method as",
        }
    }

    /// The slot changed.
    pub fn slot(&self) -> &str {
        match self {
            Change::Write(s) | Change::Remove(s) | Change::Install(s) => s,
        }
    }
}

/// Whose an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The user's: the role rules alone apply.
    User,
    /// The kernel's: it keeps its structures in it.
    Kernel,
    /// A kernel prototype whose slots named here (and `parent*`) are the
    /// kernel's machinery and whose other slots are settings.
    KernelSettings(&'a [&'a str]),
}

/// What the changed slot holds now, as far as the rule cares (never its
/// value: deciding copies nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Current {
    /// Nothing.
    Absent,
    /// A data slot.
    Data,
    /// A method.
    Method,
    /// A built-in primitive.
    Primitive(Primitive),
}

impl Current {
    /// The shape of `slot`.
    pub fn of(slot: Option<&Slot>) -> Current {
        match slot {
            None => Current::Absent,
            Some(Slot::Data(_)) => Current::Data,
            Some(Slot::Method(_)) => Current::Method,
            Some(Slot::Primitive(p)) => Current::Primitive(*p),
        }
    }
}

/// The object a change lands on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its oid.
    pub oid: Oid,
    /// The root it is, if any.
    pub root: Option<&'a str>,
    /// Whose it is.
    pub owner: Owner<'a>,
    /// What the changed slot holds now, if anything.
    pub current: Current,
}

/// Checks that `role` may make `change` to `target`; the error says why not.
pub fn check(role: Role, target: Target<'_>, change: Change<'_>) -> Result<(), String> {
    if role == Role::Kernel {
        return Ok(());
    }
    let what = || {
        format!(
            "{} slot {:?} of object {}{}",
            change.name(),
            change.slot(),
            target.oid,
            target.root.map(|r| format!(" ({r})")).unwrap_or_default()
        )
    };
    role.require(Role::Write, &what())?;
    if let Current::Primitive(p) = target.current {
        return Err(format!(
            "{}: {:?} is a built-in primitive of {}",
            what(),
            p.selector(),
            p.root()
        ));
    }
    let needs_admin = match target.owner {
        Owner::User => {
            target.root == Some(roots::TRAITS)
                || (target.root.is_some() && matches!(change, Change::Install(_)))
        }
        Owner::Kernel => {
            let method_on_root = matches!(change, Change::Install(_))
                && target.root.is_some()
                && target.current != Current::Data;
            if !method_on_root {
                return Err(format!(
                    "{}: the object is the kernel's own bookkeeping",
                    what()
                ));
            }
            true
        }
        Owner::KernelSettings(machinery) => {
            let slot = change.slot();
            if slot == PARENT_SLOT || machinery.contains(&slot) {
                return Err(format!(
                    "{}: the slot is the kernel's machinery; the object's other slots are settings",
                    what()
                ));
            }
            true
        }
    };
    if needs_admin {
        role.require(Role::Admin, &what())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(oid: Oid) -> Target<'static> {
        Target {
            oid,
            root: None,
            owner: Owner::User,
            current: Current::Absent,
        }
    }

    #[test]
    fn roles_parse_by_name_and_order_by_rights() {
        assert_eq!(Role::parse("write"), Some(Role::Write));
        assert_eq!(Role::parse("kernel"), None, "no client is the kernel");
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        assert!(Role::Admin.require(Role::Write, "x").is_ok());
        let err = Role::Read.require(Role::Write, "set_slot").unwrap_err();
        assert!(
            err.contains("write role") && err.contains("has read"),
            "{err}"
        );
    }

    #[test]
    fn read_changes_nothing_and_write_changes_the_users_objects() {
        assert!(check(Role::Read, plain(9), Change::Write("x")).is_err());
        assert!(check(Role::Read, plain(9), Change::Install("m")).is_err());
        assert!(check(Role::Write, plain(9), Change::Write("x")).is_ok());
        assert!(check(Role::Write, plain(9), Change::Install("m")).is_ok());
        assert!(check(Role::Write, plain(9), Change::Remove("x")).is_ok());
    }

    #[test]
    fn the_kernels_objects_refuse_every_client_but_admin_methods_on_roots() {
        let chunk = Target {
            owner: Owner::Kernel,
            ..plain(40)
        };
        for role in Role::CLIENT {
            assert!(check(role, chunk, Change::Write("source_text")).is_err());
            assert!(check(role, chunk, Change::Install("m")).is_err());
        }
        assert!(check(Role::Kernel, chunk, Change::Write("source_text")).is_ok());
        let catalog = Target {
            root: Some(roots::KNOWLEDGE_CATALOG),
            owner: Owner::Kernel,
            ..plain(5)
        };
        assert!(check(Role::Admin, catalog, Change::Install("report")).is_ok());
        assert!(check(Role::Write, catalog, Change::Install("report")).is_err());
        let over_data = Target {
            current: Current::Data,
            ..catalog
        };
        let err = check(Role::Admin, over_data, Change::Install("memory_seq")).unwrap_err();
        assert!(err.contains("kernel's own"), "{err}");
    }

    #[test]
    fn settings_of_kernel_prototypes_take_admin_and_their_machinery_nobody() {
        let state = Target {
            owner: Owner::KernelSettings(&["next_state"]),
            ..plain(12)
        };
        assert!(check(Role::Admin, state, Change::Write("queries")).is_ok());
        assert!(check(Role::Write, state, Change::Write("queries")).is_err());
        for slot in ["next_state", PARENT_SLOT] {
            let err = check(Role::Admin, state, Change::Write(slot)).unwrap_err();
            assert!(err.contains("machinery"), "{err}");
        }
    }

    #[test]
    fn primitives_stay_and_roots_take_admin() {
        let traits = Target {
            root: Some(roots::TRAITS),
            ..plain(1)
        };
        let on_clone = Target {
            current: Current::Primitive(Primitive::Clone),
            ..traits
        };
        for role in Role::CLIENT {
            let err = check(role, on_clone, Change::Remove("clone")).unwrap_err();
            assert!(role == Role::Read || err.contains("primitive"), "{err}");
        }
        assert!(check(Role::Write, traits, Change::Write("x")).is_err());
        assert!(check(Role::Admin, traits, Change::Write("x")).is_ok());
        let genesis = Target {
            root: Some(roots::GENESIS),
            ..plain(3)
        };
        assert!(check(Role::Write, genesis, Change::Write("x")).is_ok());
        assert!(check(Role::Write, genesis, Change::Install("m")).is_err());
        assert!(check(Role::Admin, genesis, Change::Install("m")).is_ok());
    }
}
