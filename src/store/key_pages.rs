//! Pages of the inventory for `GET keys`: keyset pagination on `(created_at, id)`, the order
//! the unpaginated listing has always had. A page is one range scan of an index
//! (`keys_listing`, or `keys_namespace_listing` with a namespace filter), never an OFFSET, so
//! it costs the same wherever it starts and however large the store is. Rows never change
//! their `created_at` or `id`, so a key that exists for the whole walk is returned exactly
//! once, whatever is created or deleted between pages.

use rusqlite::types::Value;

use super::{KeyRecord, Store, StoreError};

/// Which keys a caller may see, as data the store turns into SQL (the core derives it from a
/// principal's permissions, so a page is filled by the query, not thinned afterwards).
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    /// Every namespace may be read.
    pub all: bool,
    /// Namespaces whose keys may all be read.
    pub namespaces: Vec<String>,
    /// Keys owned by this principal name may be read too ...
    pub owner: Option<String>,
    /// ... in these namespaces (`None`: in any).
    pub owner_namespaces: Option<Vec<String>>,
}

/// Where a page starts: just after this position in the listing's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created_at: crate::clock::Timestamp,
    pub id: String,
}

impl Store {
    /// Up to `limit` keys after `after` (from the start when `None`), in listing order,
    /// filtered by namespace and name and by what `who` may see. Keys being deleted are not
    /// listed; missing ones are (as in [`Store::list_keys`]).
    pub fn keys_page(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
        who: &Visibility,
        after: Option<&After>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let (sql, args) = page_query(namespace, name, who, after, limit);
        let conn = self.conn();
        let mut st = conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), KeyRecord::from_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// The statement and its arguments. Only the shape varies (which filters are present), so
/// there are few distinct statements and the cache keeps them prepared.
fn page_query(namespace: Option<&str>, name: Option<&str>, who: &Visibility, after: Option<&After>, limit: usize) -> (String, Vec<Value>) {
    let mut cond = vec!["status<>'deleting'".to_string()];
    let mut args: Vec<Value> = Vec::new();
    let arg = |v: Value, args: &mut Vec<Value>| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(ns) = namespace {
        cond.push(format!("namespace={}", arg(Value::Text(ns.into()), &mut args)));
    }
    if let Some(n) = name {
        cond.push(format!("name={}", arg(Value::Text(n.into()), &mut args)));
    }
    if let Some(a) = after {
        let c = arg(Value::Text(a.created_at.to_string()), &mut args);
        let i = arg(Value::Text(a.id.clone()), &mut args);
        cond.push(format!("(created_at, id) > ({c}, {i})"));
    }
    if !who.all {
        let list = |v: &[String]| Value::Text(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
        let mut any = vec![format!("namespace IN (SELECT value FROM json_each({}))", arg(list(&who.namespaces), &mut args))];
        if let Some(owner) = &who.owner {
            let o = arg(Value::Text(owner.clone()), &mut args);
            match &who.owner_namespaces {
                None => any.push(format!("owner={o}")),
                Some(ns) => any.push(format!("(owner={o} AND namespace IN (SELECT value FROM json_each({})))", arg(list(ns), &mut args))),
            }
        }
        cond.push(format!("({})", any.join(" OR ")));
    }
    let l = arg(Value::Integer(limit as i64), &mut args);
    (format!("SELECT {} FROM keys WHERE {} ORDER BY created_at, id LIMIT {l}", KeyRecord::COLUMNS, cond.join(" AND ")), args)
}

#[cfg(test)]
mod tests {
    use super::super::{test_rows, Store};
    use super::*;

    fn store_with(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("k.db")).unwrap();
        for i in 0..n {
            let ns = if i % 3 == 0 { "web" } else { "db" };
            let mut k = test_rows::key(&format!("{i:04x}"), ns, &format!("k{i}"), false);
            // Same instant for some rows: the id breaks the tie.
            k.created_at = format!("2026-01-01T00:00:{:02}.000000Z", i / 4).parse().unwrap();
            if i % 5 == 0 {
                k.owner = "alice".into();
            }
            s.commit_key(&k, &[], &test_rows::audit(), None).unwrap();
        }
        (dir, s)
    }

    fn walk(s: &Store, ns: Option<&str>, who: &Visibility, limit: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = s.keys_page(ns, None, who, after.as_ref(), limit).unwrap();
            out.extend(page.iter().map(|k| k.id.clone()));
            match page.last() {
                Some(k) if page.len() == limit => after = Some(After { created_at: k.created_at, id: k.id.clone() }),
                _ => return out,
            }
        }
    }

    #[test]
    fn pages_walk_the_listing_in_order_exactly_once() {
        let (_d, s) = store_with(50);
        let all = Visibility { all: true, ..Default::default() };
        let listed: Vec<String> = s.list_keys(None, None).unwrap().into_iter().map(|k| k.id).collect();
        for limit in [1, 7, 50, 51] {
            assert_eq!(walk(&s, None, &all, limit), listed, "limit {limit}");
        }
        let web: Vec<String> = s.list_keys(Some("web"), None).unwrap().into_iter().map(|k| k.id).collect();
        assert_eq!(walk(&s, Some("web"), &all, 4), web);
        assert_eq!(s.keys_page(None, Some("k7"), &all, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn visibility_is_applied_by_the_query() {
        let (_d, s) = store_with(30);
        let list = |who: &Visibility| walk(&s, None, who, 4);
        let want = |f: &dyn Fn(&KeyRecord) -> bool| {
            s.list_keys(None, None).unwrap().into_iter().filter(|k| f(k)).map(|k| k.id).collect::<Vec<_>>()
        };
        let web_only = Visibility { namespaces: vec!["web".into()], ..Default::default() };
        assert_eq!(list(&web_only), want(&|k| k.namespace == "web"));
        let alice_in_db = Visibility { owner: Some("alice".into()), owner_namespaces: Some(vec!["db".into()]), ..Default::default() };
        assert_eq!(list(&alice_in_db), want(&|k| k.owner == "alice" && k.namespace == "db"));
        let alice_anywhere =
            Visibility { namespaces: vec!["web".into()], owner: Some("alice".into()), owner_namespaces: None, ..Default::default() };
        assert_eq!(list(&alice_anywhere), want(&|k| k.namespace == "web" || k.owner == "alice"));
        assert!(list(&Visibility::default()).is_empty(), "no permission, nothing listed");
    }

    /// Constant cost per page: every shape of the query is a range scan of a listing index,
    /// with no sort step (an OFFSET or a temp B-tree would grow with the store).
    #[test]
    fn every_page_is_an_index_range_scan() {
        let (_d, s) = store_with(5);
        let after = After { created_at: "2026-01-01T00:00:00.000000Z".parse().unwrap(), id: "0001".into() };
        let some = Visibility { namespaces: vec!["web".into()], owner: Some("alice".into()), ..Default::default() };
        let all = Visibility { all: true, ..Default::default() };
        for (ns, who, a) in
            [(None, &all, Some(&after)), (Some("web"), &all, Some(&after)), (None, &some, Some(&after)), (Some("db"), &some, None)]
        {
            let (sql, args) = page_query(ns, None, who, a, 10);
            let conn = s.conn();
            let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> =
                st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap();
            let text = plan.join(" | ");
            let keys_scan = plan.iter().find(|l| l.contains(" keys ")).unwrap_or_else(|| panic!("{text}"));
            assert!(keys_scan.contains("keys_listing") || keys_scan.contains("keys_namespace_listing"), "{text}");
            assert!(!text.contains("TEMP B-TREE"), "no sort step: {text}");
            if a.is_some() {
                assert!(keys_scan.starts_with("SEARCH") && keys_scan.contains(")>(?,?)"), "a range, not a full scan: {text}");
            }
        }
    }
}
