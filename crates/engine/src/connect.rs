//! `network connect` / `network disconnect` for a container, and their events.

use std::collections::BTreeMap;

use crate::container::Status;
use crate::engine::Engine;
use crate::error::EngineError;

impl Engine {
    /// `network connect`: connects a container (running or not) to a network, with `--ip`
    /// (`ip`, empty = none) and `--alias`es; a running container gets its interface at once.
    pub async fn connect(
        &self,
        network: &str,
        reference: &str,
        ip: &str,
        aliases: &[String],
    ) -> Result<(), EngineError> {
        self.connect_with(network, reference, ip, aliases, Default::default())
            .await
    }

    /// [`Engine::connect`] with the endpoint's other settings (links, MAC address, ...).
    pub async fn connect_with(
        &self,
        network: &str,
        reference: &str,
        ip: &str,
        aliases: &[String],
        endpoint: berth_networks::EndpointConfig,
    ) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        let running = c.state().status == Status::Running;
        self.networks
            .connect_with(
                network,
                c.id(),
                &c.name(),
                &c.config.spec.network_mode,
                ip,
                aliases,
                running,
                endpoint,
            )
            .await?;
        self.publish_network_event("connect", network, c.id());
        Ok(())
    }

    /// `network disconnect`: removes a container's interface (if running) and membership.
    pub async fn disconnect(&self, network: &str, reference: &str) -> Result<(), EngineError> {
        let c = self.container(reference)?;
        let _op = c.op.lock().await;
        self.networks.disconnect(network, c.id(), &c.name()).await?;
        self.publish_network_event("disconnect", network, c.id());
        Ok(())
    }

    pub(crate) fn publish_network_event(&self, action: &str, network: &str, container_id: &str) {
        if let Ok(n) = self.networks.get(network) {
            let attrs = BTreeMap::from([
                ("container".to_owned(), container_id.to_owned()),
                ("name".to_owned(), n.name),
                ("type".to_owned(), n.driver),
            ]);
            self.events.publish("network", action, &n.id, attrs);
        }
    }
}
