//! The image on RocksDB: the only crate that touches `rocksdb`.
//!
//! See [`keys`] for the layout. Every message's changes arrive as one
//! [`CommitGroup`] and are written in one atomic `WriteBatch`.

pub mod codec;
pub mod keys;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use batos_object::image::{CommitGroup, Image, ImageError, ImageMeta, StoredObject};
use batos_object::slot::MethodRecord;
use batos_object::Oid;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};

use keys::*;

/// The image format this kernel writes and understands.
pub const FORMAT_VERSION: u32 = 1;

/// Settings of the RocksDB image.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Block cache size.
    pub block_cache_bytes: usize,
    /// Checkpoints kept: taking one more removes the oldest (at least 1).
    pub keep_snapshots: usize,
}

/// The image: a RocksDB database under `<data_dir>/image`, checkpoints under
/// `<data_dir>/snapshots`.
pub struct RocksImage {
    db: DB,
    snapshots: PathBuf,
    snapshot_seq: AtomicU64,
    keep_snapshots: usize,
    /// Checkpoints are taken one at a time (each is a full pass over the
    /// image's files).
    checkpointing: Mutex<()>,
}

fn storage(e: rocksdb::Error) -> ImageError {
    ImageError::Storage(e.into_string())
}

impl RocksImage {
    /// Opens (or creates) the image in `data_dir`. An image written by a newer
    /// format is refused.
    pub fn open(data_dir: &Path, options: &StoreOptions) -> Result<RocksImage, ImageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ImageError::Storage(format!("creating {}: {e}", data_dir.display())))?;
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_compression_type(rocksdb::DBCompressionType::None);
        let mut db_opts = cf_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        let families = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_opts.clone()));
        let db =
            DB::open_cf_descriptors(&db_opts, data_dir.join("image"), families).map_err(storage)?;
        let image = RocksImage {
            db,
            snapshots: data_dir.join("snapshots"),
            snapshot_seq: AtomicU64::new(0),
            keep_snapshots: options.keep_snapshots.max(1),
            checkpointing: Mutex::new(()),
        };
        image.check_format()?;
        Ok(image)
    }

    /// Removes the oldest checkpoints past `keep_snapshots` (directories
    /// named as the kernel names them; anything else is left alone).
    fn remove_old_snapshots(&self) -> Result<(), ImageError> {
        let listing = std::fs::read_dir(&self.snapshots).map_err(|e| {
            ImageError::Storage(format!("listing {}: {e}", self.snapshots.display()))
        })?;
        let mut taken: Vec<((u128, u64), PathBuf)> = listing
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let (millis, seq) = name.to_str()?.split_once('-')?;
                Some(((millis.parse().ok()?, seq.parse().ok()?), entry.path()))
            })
            .collect();
        taken.sort();
        let excess = taken.len().saturating_sub(self.keep_snapshots);
        for (_, path) in taken.into_iter().take(excess) {
            std::fs::remove_dir_all(&path).map_err(|e| {
                ImageError::Storage(format!("removing the old snapshot {}: {e}", path.display()))
            })?;
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    fn check_format(&self) -> Result<(), ImageError> {
        let meta = self.cf(CF_META);
        match self.db.get_cf(meta, META_FORMAT_VERSION).map_err(storage)? {
            Some(bytes) => {
                let version = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| ImageError::Corrupt("format_version is not 4 bytes".into()))?;
                if version > FORMAT_VERSION {
                    return Err(ImageError::Version(format!(
                        "this image has format version {version}, newer than the {FORMAT_VERSION} this kernel \
                         understands; run a newer kernel (the image was left untouched)"
                    )));
                }
                Ok(())
            }
            None => {
                let mut opts = WriteOptions::default();
                opts.set_sync(true);
                self.db
                    .put_cf_opt(
                        meta,
                        META_FORMAT_VERSION,
                        FORMAT_VERSION.to_be_bytes(),
                        &opts,
                    )
                    .map_err(storage)
            }
        }
    }

    fn get_u64(&self, key: &[u8]) -> Result<u64, ImageError> {
        match self.db.get_cf(self.cf(CF_META), key).map_err(storage)? {
            Some(bytes) => codec::decode_u64(&bytes),
            None => Ok(0),
        }
    }

    /// Writes a format version (tests of the refusal path).
    #[doc(hidden)]
    pub fn force_format_version(&self, version: u32) -> Result<(), ImageError> {
        self.db
            .put_cf(self.cf(CF_META), META_FORMAT_VERSION, version.to_be_bytes())
            .map_err(storage)
    }
}

impl Image for RocksImage {
    fn meta(&self) -> Result<ImageMeta, ImageError> {
        let roots = match self
            .db
            .get_cf(self.cf(CF_META), META_ROOTS)
            .map_err(storage)?
        {
            Some(bytes) => Some(codec::decode_roots(&bytes)?),
            None => None,
        };
        Ok(ImageMeta {
            next_oid: self.get_u64(META_NEXT_OID)?,
            objects: self.get_u64(META_OBJECTS)?,
            last_tx: self.get_u64(META_LAST_TX)?,
            roots,
        })
    }

    fn load_object(&self, oid: Oid) -> Result<Option<StoredObject>, ImageError> {
        if !self.object_exists(oid)? {
            return Ok(None);
        }
        let mut opts = ReadOptions::default();
        if let Some(end) = slot_range_end(oid) {
            opts.set_iterate_upper_bound(end.to_vec());
        }
        let start = object_key(oid);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_SLOTS),
            opts,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut slots = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(storage)?;
            let (_, name) =
                parse_slot_key(&key).ok_or_else(|| ImageError::Corrupt("slot key".into()))?;
            slots.push((name.to_string(), codec::decode_slot(&value)?));
        }
        Ok(Some(StoredObject { slots }))
    }

    fn object_exists(&self, oid: Oid) -> Result<bool, ImageError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_OBJECTS), object_key(oid))
            .map_err(storage)?
            .is_some())
    }

    fn commit(&self, group: &CommitGroup<'_>, sync: bool) -> Result<(), ImageError> {
        let (meta, objects, slots) = (self.cf(CF_META), self.cf(CF_OBJECTS), self.cf(CF_SLOTS));
        let (methods, modules) = (self.cf(CF_METHODS), self.cf(CF_MODULES));
        let mut batch = WriteBatch::default();
        let mut last_tx = 0;
        for (id, tx) in &group.transactions {
            last_tx = *id;
            for (oid, changes) in tx.writes() {
                if changes.created {
                    batch.put_cf(objects, object_key(*oid), codec::OBJECT_HEADER);
                }
                for (name, slot) in &changes.slots {
                    match slot {
                        Some(slot) => {
                            batch.put_cf(slots, slot_key(*oid, name), codec::encode_slot(slot))
                        }
                        None => batch.delete_cf(slots, slot_key(*oid, name)),
                    }
                }
            }
            for install in tx.installs() {
                let key = method_key(install.oid, &install.selector, install.method.version);
                batch.put_cf(
                    methods,
                    key,
                    codec::encode_method(
                        &install.method.hash,
                        &install.provenance,
                        install.source.as_ref(),
                        *id,
                    ),
                );
                batch.put_cf(modules, install.method.hash.as_bytes(), &install.wasm);
            }
            for (hash, bytes) in tx.blobs() {
                batch.put_cf(modules, hash.as_bytes(), bytes);
            }
            if let Some(roots) = tx.roots() {
                batch.put_cf(meta, META_ROOTS, codec::encode_roots(roots));
            }
        }
        batch.put_cf(meta, META_NEXT_OID, codec::encode_u64(group.next_oid));
        batch.put_cf(meta, META_OBJECTS, codec::encode_u64(group.objects));
        batch.put_cf(meta, META_LAST_TX, codec::encode_u64(last_tx));
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(batch, &opts).map_err(storage)
    }

    fn checkpoint(&self) -> Result<String, ImageError> {
        let _one_at_a_time = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.snapshots).map_err(|e| {
            ImageError::Storage(format!("creating {}: {e}", self.snapshots.display()))
        })?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let id = format!(
            "{millis}-{}",
            self.snapshot_seq.fetch_add(1, Ordering::Relaxed)
        );
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(storage)?;
        checkpoint
            .create_checkpoint(self.snapshots.join(&id))
            .map_err(storage)?;
        self.remove_old_snapshots()?;
        Ok(id)
    }

    fn flush(&self) -> Result<(), ImageError> {
        self.db.flush_wal(true).map_err(storage)?;
        for name in FAMILIES {
            self.db.flush_cf(self.cf(name)).map_err(storage)?;
        }
        // Stop compactions and flushes now: their threads must not outlive
        // the process's static destructors.
        self.db.cancel_all_background_work(true);
        Ok(())
    }

    fn method_history(&self, oid: Oid) -> Result<Vec<(String, MethodRecord)>, ImageError> {
        let mut opts = ReadOptions::default();
        if let Some(end) = slot_range_end(oid) {
            opts.set_iterate_upper_bound(end.to_vec());
        }
        let start = object_key(oid);
        let iter = self.db.iterator_cf_opt(
            self.cf(CF_METHODS),
            opts,
            rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(storage)?;
            let (_, selector, version) =
                parse_method_key(&key).ok_or_else(|| ImageError::Corrupt("method key".into()))?;
            out.push((selector.to_string(), codec::decode_method(version, &value)?));
        }
        Ok(out)
    }

    fn load_module(&self, hash: &str) -> Result<Option<Vec<u8>>, ImageError> {
        self.db
            .get_cf(self.cf(CF_MODULES), hash.as_bytes())
            .map_err(storage)
    }

    fn load_compiled(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
        self.db.get_cf(self.cf(CF_COMPILED), key).map_err(storage)
    }

    fn store_compiled(&self, key: &[u8], bytes: &[u8]) -> Result<(), ImageError> {
        self.db
            .put_cf(self.cf(CF_COMPILED), key, bytes)
            .map_err(storage)
    }

    fn retain_compiled(&self, prefix: &[u8]) -> Result<usize, ImageError> {
        let cf = self.cf(CF_COMPILED);
        let mut batch = WriteBatch::default();
        let mut dropped = 0;
        for entry in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (key, _) = entry.map_err(storage)?;
            if !key.starts_with(prefix) {
                batch.delete_cf(cf, &key);
                dropped += 1;
            }
        }
        self.db.write(batch).map_err(storage)?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batos_object::slot::Slot;
    use batos_object::txn::Transaction;
    use batos_object::Value;

    fn open(dir: &Path) -> RocksImage {
        RocksImage::open(
            dir,
            &StoreOptions {
                block_cache_bytes: 1 << 20,
                keep_snapshots: 8,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_rocksdb_image_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = std::sync::atomic::AtomicUsize::new(0);
        batos_object::testing::conformance::run(|| {
            let n = fresh.fetch_add(1, Ordering::Relaxed);
            Box::new(open(&dir.path().join(n.to_string())))
        });
    }

    #[test]
    fn a_commit_is_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let image = open(dir.path());
            let mut tx = Transaction::new();
            tx.create(7, vec![("x".into(), Slot::Data(Value::from(42)))]);
            tx.set_roots(vec![("traits_obj".into(), 7)]);
            let group = CommitGroup {
                transactions: vec![(1, &tx)],
                next_oid: 8,
                objects: 1,
            };
            image.commit(&group, true).unwrap();
        }
        let image = open(dir.path());
        let meta = image.meta().unwrap();
        assert_eq!((meta.next_oid, meta.objects, meta.last_tx), (8, 1, 1));
        assert_eq!(meta.roots, Some(vec![("traits_obj".to_string(), 7)]));
        let obj = image.load_object(7).unwrap().unwrap();
        assert_eq!(
            obj.slots,
            vec![("x".to_string(), Slot::Data(Value::from(42)))]
        );
        assert!(image.load_object(8).unwrap().is_none());
        // Slots of the neighbouring oid do not leak into this object.
        let mut tx = Transaction::new();
        tx.create(8, vec![("y".into(), Slot::Data(Value::Nil))]);
        let group = CommitGroup {
            transactions: vec![(2, &tx)],
            next_oid: 9,
            objects: 2,
        };
        image.commit(&group, false).unwrap();
        assert_eq!(image.load_object(7).unwrap().unwrap().slots.len(), 1);
    }

    #[test]
    fn a_newer_format_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path())
            .force_format_version(FORMAT_VERSION + 1)
            .unwrap();
        let err = RocksImage::open(
            dir.path(),
            &StoreOptions {
                block_cache_bytes: 1 << 20,
                keep_snapshots: 8,
            },
        )
        .err()
        .unwrap();
        assert!(matches!(err, ImageError::Version(_)), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn checkpoints_are_openable_copies() {
        let dir = tempfile::tempdir().unwrap();
        let image = open(dir.path());
        let mut tx = Transaction::new();
        tx.create(1, vec![("a".into(), Slot::Data(Value::from("b")))]);
        image
            .commit(
                &CommitGroup {
                    transactions: vec![(1, &tx)],
                    next_oid: 2,
                    objects: 1,
                },
                true,
            )
            .unwrap();
        let id = image.checkpoint().unwrap();
        let copy = tempfile::tempdir().unwrap();
        // A checkpoint directory is itself a RocksDB image directory.
        std::fs::rename(
            dir.path().join("snapshots").join(&id),
            copy.path().join("image"),
        )
        .unwrap();
        let restored = open(copy.path());
        assert_eq!(restored.meta().unwrap().objects, 1);
        assert!(restored.load_object(1).unwrap().is_some());
    }

    #[test]
    fn only_the_newest_snapshots_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let image = RocksImage::open(
            dir.path(),
            &StoreOptions {
                block_cache_bytes: 1 << 20,
                keep_snapshots: 2,
            },
        )
        .unwrap();
        let stranger = dir.path().join("snapshots").join("kept-by-hand");
        std::fs::create_dir_all(&stranger).unwrap();
        let ids: Vec<String> = (0..4).map(|_| image.checkpoint().unwrap()).collect();
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![ids[2].clone(), ids[3].clone(), "kept-by-hand".to_string()];
        want.sort();
        assert_eq!(left, want);
    }
}
