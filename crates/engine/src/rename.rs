//! `rename`: gives a container a new name, atomically in the name table, durably in its
//! `config.json`, and on its networks (the embedded resolver answers to the new name at once).

use crate::engine::Engine;
use crate::error::EngineError;
use crate::handle::lock;

impl Engine {
    /// `POST /containers/{id}/rename?name=NEW`. Errors as Docker's: 400 for an empty or invalid
    /// name or the current one, 409 when another container has it.
    pub async fn rename(&self, reference: &str, new_name: &str) -> Result<(), EngineError> {
        let new_name = new_name.trim_start_matches('/');
        if new_name.is_empty() {
            return Err(EngineError::Invalid(
                "Neither old nor new names may be empty".into(),
            ));
        }
        berth_state::validate_name("container", new_name)?;
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let old_name = c.name();
        if old_name == new_name {
            return Err(EngineError::Invalid(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        {
            let mut table = lock(&self.table);
            if let Some(other) = table.names.get(new_name) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{new_name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            table.names.insert(new_name.to_owned(), c.id().to_owned());
        }
        let mut config = c.config.clone();
        config.name = new_name.to_owned();
        if let Err(e) = berth_state::store_json(&c.dir.join("config.json"), &config) {
            lock(&self.table).names.remove(new_name);
            return Err(e.into());
        }
        {
            let mut table = lock(&self.table);
            if table.names.get(&old_name).map(String::as_str) == Some(c.id()) {
                table.names.remove(&old_name);
            }
        }
        *lock(&c.name) = new_name.to_owned();
        self.networks.rename_member(c.id(), new_name);
        let mut attrs = c.attributes();
        attrs.insert("oldName".into(), format!("/{old_name}"));
        self.events.publish("container", "rename", c.id(), attrs);
        Ok(())
    }
}
