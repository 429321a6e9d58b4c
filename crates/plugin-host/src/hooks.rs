//! Typed calls of the MVP extension points for one plugin, choosing the path by its negotiated
//! protocol: volume (`/v1/volume/volumes`, then the seed's alternative `/v1/volumes` on 404; v2
//! `/v2/volume/<event>`), network (`/v1|v2/network/<event>`) and api pre/post hooks. A 404 or an
//! event the plugin did not subscribe to yields `Ok(None)` ("not interested"). An api hook
//! message is encoded once per body form for a whole chain of hooks ([`Encoded`]) until one of
//! them rewrites the request or response.

use berth_plugin_protocol::Protocol;
use berth_plugin_protocol::mvp::{self, NetworkEvent, NetworkMessage, VolumeEvent, VolumeMessage};
use berth_plugin_protocol::powerstrip::{
    BodyForm, ClientRequest, ClientRequestAs, HookType, POWERSTRIP_PROTOCOL_VERSION, PostHookReply,
    PreHookReply, ServerResponse, ServerResponseAs,
};
use bytes::Bytes;
use serde::Serialize;

use crate::client::{CallErrorKind, PluginError, encode_json};
use crate::plugin::LoadedPlugin;

/// A [`berth_plugin_protocol::powerstrip::HookRequest`] serialised from borrowed parts (the
/// request and response bodies are not copied for each plugin of a chain), with JSON bodies in
/// the form the plugin asked for (`BodyJSON` or `Body`).
#[derive(Serialize)]
struct HookRequestRef<'a> {
    #[serde(rename = "PowerstripProtocolVersion")]
    protocol_version: u32,
    #[serde(rename = "Type")]
    hook_type: HookType,
    #[serde(rename = "ClientRequest")]
    client_request: ClientRequestAs<'a>,
    #[serde(rename = "ServerResponse", skip_serializing_if = "Option::is_none")]
    server_response: Option<ServerResponseAs<'a>>,
}

/// Api hook messages already encoded for the request (and response) a chain of hooks is at, one
/// per body form. The message holds nothing specific to a plugin, so while the hooks change
/// nothing every plugin that takes the same form is sent the same bytes: the message is encoded,
/// and its body checked for the `BodyJSON` form, once per chain instead of once per hook. The
/// caller clears it whenever a hook rewrote the request or the response.
#[derive(Debug, Default)]
pub struct Encoded {
    text: Option<Bytes>,
    json: Option<Bytes>,
}

impl Encoded {
    /// Forgets the messages (the request or response changed).
    pub fn clear(&mut self) {
        self.text = None;
        self.json = None;
    }

    /// The message in `form`, encoded by `encode` the first time it is asked for.
    fn get(
        &mut self,
        form: BodyForm,
        encode: impl FnOnce() -> Result<Bytes, serde_json::Error>,
    ) -> Result<Bytes, serde_json::Error> {
        let slot = match form {
            BodyForm::Text => &mut self.text,
            BodyForm::Json => &mut self.json,
        };
        if let Some(b) = slot {
            return Ok(b.clone());
        }
        let b = encode()?;
        *slot = Some(b.clone());
        Ok(b)
    }
}

/// Sends an api hook message (from `encoded`, or encoded now) and decodes the reply.
async fn call_hook<Resp: serde::de::DeserializeOwned>(
    p: &LoadedPlugin,
    hook: &str,
    path: &str,
    encoded: &mut Encoded,
    message: &HookRequestRef<'_>,
) -> Result<Resp, PluginError> {
    let form = message.client_request.1;
    let body = encoded
        .get(form, || encode_json(message))
        .map_err(|e| PluginError {
            plugin: p.name().to_owned(),
            call: format!("POST {path}"),
            kind: CallErrorKind::Encode(e.to_string()),
        })?;
    p.call_encoded(hook, path, body).await
}

/// A reply that names the other hook type is refused (the plugin answered the wrong question).
fn check_type(
    p: &LoadedPlugin,
    path: &str,
    got: Option<&str>,
    want: &str,
) -> Result<(), PluginError> {
    match got {
        Some(t) if !t.eq_ignore_ascii_case(want) => Err(PluginError {
            plugin: p.name().to_owned(),
            call: format!("POST {path}"),
            kind: CallErrorKind::Decode {
                error: format!("reply has Type {t:?}, expected {want:?}"),
                snippet: String::new(),
            },
        }),
        _ => Ok(()),
    }
}

fn not_found_is_none<T>(r: Result<T, PluginError>) -> Result<Option<T>, PluginError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Hook key used in counters: `volume.create`.
pub fn volume_hook_name(event: VolumeEvent) -> String {
    format!("volume.{}", event.as_str())
}

/// Sends a volume event; returns the new `HostPath` (or `None`: unchanged / not interested).
pub async fn volume(
    p: &LoadedPlugin,
    event: VolumeEvent,
    msg: &VolumeMessage,
) -> Result<Option<String>, PluginError> {
    if !p.subscriptions().wants_volume(event) {
        return Ok(None);
    }
    let Some(path) = event.path(p.protocol()) else {
        return Ok(None);
    };
    let hook = volume_hook_name(event);
    let reply: Option<VolumeMessage> = match p.protocol() {
        Protocol::V1 => {
            let req = VolumeMessage::v1(msg.host_path.clone(), msg.container_id.clone());
            match not_found_is_none(p.call(&hook, &path, &req).await)? {
                Some(r) => Some(r),
                None => not_found_is_none(p.call(&hook, mvp::V1_VOLUME_PATH_ALT, &req).await)?,
            }
        }
        _ => {
            let mut req = msg.clone();
            req.event = Some(event);
            not_found_is_none(p.call(&hook, &path, &req).await)?
        }
    };
    Ok(reply.map(|r| r.host_path).filter(|h| !h.is_empty()))
}

/// Sends a network event; returns the reply to overlay with [`NetworkMessage::apply_reply`].
pub async fn network(
    p: &LoadedPlugin,
    event: NetworkEvent,
    msg: &NetworkMessage,
) -> Result<Option<NetworkMessage>, PluginError> {
    if !p.subscriptions().wants_network(event) {
        return Ok(None);
    }
    let Some(path) = event.path(p.protocol()) else {
        return Ok(None);
    };
    let mut req = msg.clone();
    req.event = Some(event);
    not_found_is_none(
        p.call(&format!("network.{}", event.as_str()), &path, &req)
            .await,
    )
}

/// Sends an api pre-hook; returns the rewritten request. `encoded` holds the messages already
/// encoded for `req` (see [`Encoded`]).
pub async fn api_pre(
    p: &LoadedPlugin,
    req: &ClientRequest,
    encoded: &mut Encoded,
) -> Result<Option<ClientRequest>, PluginError> {
    let path_only = req.request.split('?').next().unwrap_or_default();
    if !p.subscriptions().wants_api_pre(&req.method, path_only) {
        return Ok(None);
    }
    let path = match p.protocol() {
        Protocol::V2 => mvp::V2_API_PRE_PATH,
        Protocol::V1 => mvp::V1_API_PRE_PATH,
        Protocol::Activate => return Ok(None),
    };
    let message = HookRequestRef {
        protocol_version: POWERSTRIP_PROTOCOL_VERSION,
        hook_type: HookType::PreHook,
        client_request: ClientRequestAs(req, p.subscriptions().api_body_form()),
        server_response: None,
    };
    let reply: Option<PreHookReply> =
        not_found_is_none(call_hook(p, "api.pre", path, encoded, &message).await)?;
    if let Some(r) = &reply {
        check_type(p, path, r.hook_type.as_deref(), "pre-hook")?;
    }
    Ok(reply.and_then(|r| r.modified_client_request))
}

/// Sends an api post-hook; returns the rewritten response. `encoded` holds the messages already
/// encoded for `req` and `resp` (see [`Encoded`]).
pub async fn api_post(
    p: &LoadedPlugin,
    req: &ClientRequest,
    resp: &ServerResponse,
    encoded: &mut Encoded,
) -> Result<Option<ServerResponse>, PluginError> {
    let path_only = req.request.split('?').next().unwrap_or_default();
    if !p.subscriptions().wants_api_post(&req.method, path_only) {
        return Ok(None);
    }
    let path = match p.protocol() {
        Protocol::V2 => mvp::V2_API_POST_PATH,
        Protocol::V1 => mvp::V1_API_POST_PATH,
        Protocol::Activate => return Ok(None),
    };
    let form = p.subscriptions().api_body_form();
    let message = HookRequestRef {
        protocol_version: POWERSTRIP_PROTOCOL_VERSION,
        hook_type: HookType::PostHook,
        client_request: ClientRequestAs(req, form),
        server_response: Some(ServerResponseAs(resp, form)),
    };
    let reply: Option<PostHookReply> =
        not_found_is_none(call_hook(p, "api.post", path, encoded, &message).await)?;
    if let Some(r) = &reply {
        check_type(p, path, r.hook_type.as_deref(), "post-hook")?;
    }
    Ok(reply.and_then(|r| r.modified_server_response))
}
