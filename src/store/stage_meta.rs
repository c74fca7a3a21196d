//! What modules of osbuild HEAD's protocol report about their stage (the JSON they write to
//! `/run/osbuild/meta`, e.g. the packages an rpm stage installed): kept as
//! `STORE/meta/stages/<stage id>.json`, so a cached rebuild reports it as the first build did
//! (HEAD keeps it beside the object's tree).

use crate::id::ObjectId;
use crate::json::{self, Value};

use super::{Store, StoreError};

impl Store {
    fn stage_meta_path(&self, id: &ObjectId) -> std::path::PathBuf {
        self.root()
            .join("meta")
            .join("stages")
            .join(format!("{id}.json"))
    }

    /// Keeps `metadata` of stage `id` (written whole, then renamed into place).
    pub fn set_stage_metadata(&self, id: &ObjectId, metadata: &Value) -> Result<(), StoreError> {
        let path = self.stage_meta_path(id);
        let dir = path.parent().expect("a file in meta/stages");
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io("create", dir, e))?;
        let tmp = dir.join(format!(".{id}.json.tmp-{}", std::process::id()));
        std::fs::write(&tmp, json::dumps(metadata))
            .map_err(|e| StoreError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))
    }

    /// The metadata stage `id` reported, if any.
    pub fn stage_metadata(&self, id: &ObjectId) -> Option<Value> {
        let text = std::fs::read_to_string(self.stage_meta_path(id)).ok()?;
        json::parse(&text).ok()
    }
}
