//! Our DRPC generator: a pass over the compiled descriptors and the version
//! manifest that emits, per service, method descriptors, one client trait per
//! API version (each extending the previous one, like Go's
//! `DRPCAgentClient20` … ), one concrete client type per version, and a
//! server trait whose methods default to "Unimplemented".

use anyhow::{bail, Context, Result};
use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use proc_macro2::TokenStream;
use prost_types::FileDescriptorSet;
use quote::{format_ident, quote};

use crate::versions::{Manifest, ServiceSpec};

/// One RPC, resolved.
struct Method {
    name: String,
    input_proto: String,
    output_proto: String,
    client_streaming: bool,
    server_streaming: bool,
    since: (u16, u16),
}

impl Method {
    fn kind(&self) -> TokenStream {
        match (self.client_streaming, self.server_streaming) {
            (false, false) => quote!(MethodKind::Unary),
            (false, true) => quote!(MethodKind::ServerStreaming),
            (true, false) => quote!(MethodKind::ClientStreaming),
            (true, true) => quote!(MethodKind::Bidi),
        }
    }
    fn fn_ident(&self) -> proc_macro2::Ident {
        format_ident!("{}", self.name.to_snake_case())
    }
    fn const_ident(&self) -> proc_macro2::Ident {
        format_ident!("{}", self.name.to_shouty_snake_case())
    }
}

/// Maps a fully qualified protobuf type (`.pkg.Msg.Nested`) to the Rust path prost gives it.
fn rust_type(manifest: &Manifest, full: &str) -> Result<TokenStream> {
    let full = full.trim_start_matches('.');
    if full == "google.protobuf.Empty" {
        return Ok(quote!(()));
    }
    if let Some(name) = full.strip_prefix("google.protobuf.") {
        let ident = format_ident!("{}", name);
        return Ok(quote!(::prost_types::#ident));
    }
    for (key, spec) in &manifest.services {
        if let Some(rest) = full.strip_prefix(&format!("{}.", spec.package)) {
            let module = format_ident!("{}", key);
            let parts: Vec<&str> = rest.split('.').collect();
            let (last, parents) = parts.split_last().context("empty type name")?;
            let parents = parents.iter().map(|p| format_ident!("{}", p.to_snake_case()));
            let last = format_ident!("{}", last.to_upper_camel_case());
            return Ok(quote!(crate::proto::#module:: #(#parents::)* #last));
        }
    }
    bail!("type {full} is in no package of spec/versions.toml")
}

fn collect_methods(fds: &FileDescriptorSet, manifest: &Manifest, key: &str, spec: &ServiceSpec) -> Result<Vec<Method>> {
    let service = fds
        .file
        .iter()
        .filter(|f| f.package() == spec.package)
        .flat_map(|f| f.service.iter())
        .find(|s| s.name() == spec.service)
        .with_context(|| format!("service {}.{} not found in spec/proto", spec.package, spec.service))?;
    let mut methods = Vec::new();
    for m in &service.method {
        let since = manifest
            .versions
            .iter()
            .find(|v| v.adds_to(key).iter().any(|r| r == m.name()))
            .map(|v| v.numbers())
            .with_context(|| {
                format!(
                    "RPC {}.{} is in spec/proto but no version of spec/versions.toml adds it",
                    spec.service,
                    m.name()
                )
            })?;
        methods.push(Method {
            name: m.name().to_owned(),
            input_proto: m.input_type().trim_start_matches('.').to_owned(),
            output_proto: m.output_type().trim_start_matches('.').to_owned(),
            client_streaming: m.client_streaming(),
            server_streaming: m.server_streaming(),
            since,
        });
    }
    for v in &manifest.versions {
        for rpc in v.adds_to(key) {
            if !methods.iter().any(|m| &m.name == rpc) {
                bail!(
                    "spec/versions.toml: version {} adds {}.{rpc}, which spec/proto does not define",
                    v.version,
                    spec.service
                );
            }
        }
    }
    Ok(methods)
}

fn version_suffix((major, minor): (u16, u16)) -> String {
    format!("{major}{minor}")
}

/// Generates `drpc_<key>.rs` for one service.
pub fn generate_service(fds: &FileDescriptorSet, manifest: &Manifest, key: &str) -> Result<TokenStream> {
    let spec = &manifest.services[key];
    let methods = collect_methods(fds, manifest, key, spec)?;
    let full_service = format!("{}.{}", spec.package, spec.service);
    let prefix = spec.service.to_upper_camel_case();

    // Method descriptors.
    let mut descs = Vec::new();
    for m in &methods {
        let c = m.const_ident();
        let path = format!("/{full_service}/{}", m.name);
        let (input, output) = (&m.input_proto, &m.output_proto);
        let kind = m.kind();
        let (major, minor) = m.since;
        let (major_lit, minor_lit) = (
            proc_macro2::Literal::u16_unsuffixed(major),
            proc_macro2::Literal::u16_unsuffixed(minor),
        );
        let name = &m.name;
        let doc = format!(" `{path}`: `{input}` → `{output}`, since v{major}.{minor}.");
        descs.push(quote! {
            #[doc = #doc]
            pub const #c: MethodDesc = MethodDesc {
                service: #full_service,
                name: #name,
                path: #path,
                input: #input,
                output: #output,
                kind: #kind,
                since: ApiVersion::new(#major_lit, #minor_lit),
            };
        });
    }
    let all: Vec<_> = methods.iter().map(|m| m.const_ident()).collect();
    let all_doc = format!(" Every RPC of `{full_service}`, in proto order.");

    // Client traits, one per version.
    let mut traits = Vec::new();
    let mut structs = Vec::new();
    let mut trait_idents: Vec<proc_macro2::Ident> = Vec::new();
    for v in &manifest.versions {
        let (major, minor) = v.numbers();
        let suffix = version_suffix((major, minor));
        let trait_ident = format_ident!("{}Client{}", prefix, suffix);
        let super_trait = match trait_idents.last() {
            Some(prev) => quote!(#prev),
            None => quote!(DrpcClient),
        };
        let mut fns = Vec::new();
        for m in methods.iter().filter(|m| m.since == (major, minor)) {
            let f = m.fn_ident();
            let c = m.const_ident();
            let input = rust_type(manifest, &m.input_proto)?;
            let output = rust_type(manifest, &m.output_proto)?;
            let doc = format!(" Calls `{}` (since v{major}.{minor}).", m.name);
            fns.push(match (m.client_streaming, m.server_streaming) {
                (false, false) => quote! {
                    #[doc = #doc]
                    fn #f(&self, request: #input) -> impl Future<Output = Result<#output, RpcError>> + Send {
                        rt::unary(self.transport(), &methods::#c, request)
                    }
                },
                (false, true) => quote! {
                    #[doc = #doc]
                    #[doc = ""]
                    #[doc = " Resolves to the stream of replies once the call has started; dropping the stream cancels the call."]
                    fn #f(&self, request: #input) -> impl Future<Output = Result<Streaming<#output>, RpcError>> + Send {
                        rt::server_streaming(self.transport(), &methods::#c, request)
                    }
                },
                (true, _) => quote! {
                    #[doc = #doc]
                    #[doc = ""]
                    #[doc = " Resolves to a sender of requests and a stream of replies; dropping both cancels the call."]
                    fn #f(&self) -> impl Future<Output = Result<BidiStreaming<#input, #output>, RpcError>> + Send {
                        rt::bidi(self.transport(), &methods::#c)
                    }
                },
            });
        }
        let added: Vec<_> = v.adds_to(key).to_vec();
        let trait_doc = format!(
            " The {} API at v{major}.{minor}: {}{}",
            spec.service,
            if added.is_empty() {
                "no new RPCs on this service".to_owned()
            } else {
                format!("adds {}", added.join(", "))
            },
            match &v.release {
                Some(r) => format!(" (Coder {r}+)."),
                None => ".".to_owned(),
            }
        );
        traits.push(quote! {
            #[doc = #trait_doc]
            pub trait #trait_ident: #super_trait {
                #(#fns)*
            }
        });
        trait_idents.push(trait_ident);

        // The concrete client of this version implements its trait and all older ones.
        let struct_ident = format_ident!("{}{}", prefix, suffix);
        let struct_doc = format!(
            " A client of the {} API at v{major}.{minor}; it has the RPCs of [`{}`] and the traits it extends. Cloning shares the connection.",
            spec.service,
            trait_idents.last().map(|t| t.to_string()).unwrap_or_default()
        );
        let impls = trait_idents.iter().map(|t| quote!(impl #t for #struct_ident {}));
        let name_str = struct_ident.to_string();
        structs.push(quote! {
            #[doc = #struct_doc]
            #[derive(Clone)]
            pub struct #struct_ident {
                transport: SharedTransport,
            }
            impl #struct_ident {
                /// Builds the client over a transport (normally an RPC connection).
                pub fn new(transport: SharedTransport) -> Self {
                    Self { transport }
                }
            }
            impl std::fmt::Debug for #struct_ident {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(#name_str)
                }
            }
            impl DrpcClient for #struct_ident {
                fn transport(&self) -> &SharedTransport {
                    &self.transport
                }
            }
            #(#impls)*
        });
    }
    let latest_trait = trait_idents.last().context("no versions")?.clone();
    let latest_struct = format_ident!(
        "{}{}",
        prefix,
        version_suffix(manifest.versions.last().context("no versions")?.numbers())
    );
    let latest_alias = format_ident!("{}Latest", prefix);
    let latest_doc = format!(" The newest {} client this crate knows.", spec.service);

    // Server trait.
    let server_ident = format_ident!("{}Server", prefix);
    let service_ident = format_ident!("{}Service", prefix);
    let mut server_fns = Vec::new();
    let mut arms = Vec::new();
    for m in &methods {
        let f = m.fn_ident();
        let input = rust_type(manifest, &m.input_proto)?;
        let output = rust_type(manifest, &m.output_proto)?;
        let name = &m.name;
        let doc = format!(" Serves `{}`. The default answers Unimplemented (code 12).", m.name);
        match (m.client_streaming, m.server_streaming) {
            (false, false) => {
                server_fns.push(quote! {
                    #[doc = #doc]
                    fn #f(&self, request: #input) -> impl Future<Output = Result<#output, RpcError>> + Send {
                        let _ = request;
                        async { Err(RpcError::unimplemented()) }
                    }
                });
                arms.push(quote! {
                    #name => Box::pin(call.unary(method, move |request| async move { server.#f(request).await })),
                });
            }
            (false, true) => {
                server_fns.push(quote! {
                    #[doc = #doc]
                    fn #f(&self, request: #input, responses: ResponseSink<#output>) -> impl Future<Output = Result<(), RpcError>> + Send {
                        let _ = (request, responses);
                        async { Err(RpcError::unimplemented()) }
                    }
                });
                arms.push(quote! {
                    #name => Box::pin(call.server_streaming(method, move |request, responses| async move { server.#f(request, responses).await })),
                });
            }
            (true, false) => {
                server_fns.push(quote! {
                    #[doc = #doc]
                    fn #f(&self, requests: RequestStream<#input>) -> impl Future<Output = Result<#output, RpcError>> + Send {
                        let _ = requests;
                        async { Err(RpcError::unimplemented()) }
                    }
                });
                arms.push(quote! {
                    #name => Box::pin(call.client_streaming(method, move |requests| async move { server.#f(requests).await })),
                });
            }
            (true, true) => {
                server_fns.push(quote! {
                    #[doc = #doc]
                    fn #f(&self, requests: RequestStream<#input>, responses: ResponseSink<#output>) -> impl Future<Output = Result<(), RpcError>> + Send {
                        let _ = (requests, responses);
                        async { Err(RpcError::unimplemented()) }
                    }
                });
                arms.push(quote! {
                    #name => Box::pin(call.bidi(method, move |requests, responses| async move { server.#f(requests, responses).await })),
                });
            }
        }
    }
    let server_doc = format!(
        "The server side of `{full_service}`: implement the RPCs you serve; every other one answers Unimplemented, as Go's generated stubs do."
    );
    let service_doc = format!(" Registers a [`{server_ident}`] with a DRPC [`Router`](crate::drpc::Router).");

    Ok(quote! {
        use std::future::Future;
        use std::sync::Arc;

        #[allow(unused_imports)]
        use crate::drpc::client::{self as rt, BidiStreaming, DrpcClient, SharedTransport, Streaming};
        #[allow(unused_imports)]
        use crate::drpc::server::{RequestStream, ResponseSink, ServerCall, Service};
        use crate::drpc::{ApiVersion, MethodDesc, MethodKind, RpcError};

        /// Descriptors of every RPC of this service: wire path, types, shape and first version.
        pub mod methods {
            use super::{ApiVersion, MethodDesc, MethodKind};
            #(#descs)*
            #[doc = #all_doc]
            pub const ALL: &[&MethodDesc] = &[#(&#all),*];
        }

        #(#traits)*

        #(#structs)*

        #[doc = #latest_doc]
        pub type #latest_alias = #latest_struct;

        /// The client trait of the newest version, for generic code.
        pub use self::#latest_trait as LatestClient;

        #[doc = #server_doc]
        pub trait #server_ident: Send + Sync + 'static {
            #(#server_fns)*
        }

        #[doc = #service_doc]
        pub struct #service_ident<S>(Arc<S>);

        impl<S: #server_ident> #service_ident<S> {
            /// Wraps a server implementation.
            pub fn new(server: S) -> Self {
                Self(Arc::new(server))
            }
            /// Wraps a shared server implementation.
            pub fn from_arc(server: Arc<S>) -> Self {
                Self(server)
            }
        }

        impl<S: #server_ident> Service for #service_ident<S> {
            fn methods(&self) -> &'static [&'static MethodDesc] {
                methods::ALL
            }

            fn call(&self, method: &'static MethodDesc, call: ServerCall) -> futures::future::BoxFuture<'static, ()> {
                let server = self.0.clone();
                match method.name {
                    #(#arms)*
                    _ => {
                        call.fail(RpcError::unimplemented());
                        Box::pin(async {})
                    }
                }
            }
        }
    })
}

/// Generates `versions.rs`: the version table.
pub fn generate_versions(manifest: &Manifest) -> Result<TokenStream> {
    let mut rows = Vec::new();
    for v in &manifest.versions {
        let (major, minor) = v.numbers();
        let (major, minor) = (
            proc_macro2::Literal::u16_unsuffixed(major),
            proc_macro2::Literal::u16_unsuffixed(minor),
        );
        let release = match &v.release {
            Some(r) => quote!(Some(#r)),
            None => quote!(None),
        };
        let summary = &v.summary;
        let mut refs = Vec::new();
        for key in manifest.services.keys() {
            let module = format_ident!("{}", key);
            for rpc in v.adds_to(key) {
                let c = format_ident!("{}", rpc.to_shouty_snake_case());
                refs.push(quote!(&crate::rpc::#module::methods::#c));
            }
        }
        rows.push(quote! {
            VersionInfo {
                version: ApiVersion::new(#major, #minor),
                release: #release,
                summary: #summary,
                adds: &[#(#refs),*],
            }
        });
    }
    // Every client trait of every service, for `use coder_agentsdk::rpc::prelude::*`.
    let mut prelude = Vec::new();
    for (key, spec) in &manifest.services {
        let module = format_ident!("{}", key);
        let traits = manifest.versions.iter().map(|v| {
            format_ident!(
                "{}Client{}",
                spec.service.to_upper_camel_case(),
                version_suffix(v.numbers())
            )
        });
        prelude.push(quote!(pub use crate::rpc::#module::{#(#traits),*};));
    }
    // One row per version for `connect_rpcNN` (src/rpc/dial.rs): the method
    // name, the version, the concrete clients and the doc line with the
    // release taken from the table, so no hand list can drift from it.
    let services: Vec<&str> = ["agent", "tailnet"]
        .into_iter()
        .filter(|k| manifest.services.contains_key(*k))
        .collect();
    if services.len() != 2 {
        bail!("versions.toml: pinned connects need the agent and tailnet services");
    }
    let mut pinned = Vec::new();
    for v in &manifest.versions {
        let (vmaj, vmin) = v.numbers();
        let suffix = version_suffix((vmaj, vmin));
        let method = format_ident!("connect_rpc{}", suffix);
        let agent = format_ident!("{}{}", manifest.services["agent"].service.to_upper_camel_case(), suffix);
        let tailnet = format_ident!(
            "{}{}",
            manifest.services["tailnet"].service.to_upper_camel_case(),
            suffix
        );
        let compat = match &v.release {
            Some(r) => format!("first accepted by Coder {r}"),
            None => "no Coder release known to accept it yet".to_owned(),
        };
        let doc = format!(
            "Connects at API v{vmaj}.{vmin} ({compat}); returns the agent and tailnet clients of that version on one connection."
        );
        let (vmaj, vmin) = (
            proc_macro2::Literal::u16_unsuffixed(vmaj),
            proc_macro2::Literal::u16_unsuffixed(vmin),
        );
        pinned.push(quote!(#method => (#vmaj, #vmin, #agent, #tailnet, #doc)));
    }
    let (major, minor) = manifest.versions.last().context("no versions")?.numbers();
    let (major, minor) = (
        proc_macro2::Literal::u16_unsuffixed(major),
        proc_macro2::Literal::u16_unsuffixed(minor),
    );
    Ok(quote! {
        /// Hands the macro named by the caller one row per version:
        /// `connect_rpcNN => (major, minor, AgentNN, TailnetNN, "doc")`.
        macro_rules! pinned_versions {
            ($m:ident) => {
                $m! { #(#pinned),* }
            };
        }
        pub(crate) use pinned_versions;

        /// Every client trait of every version, so that one glob import makes all methods callable.
        pub mod prelude {
            #(#prelude)*
            pub use crate::drpc::DrpcClient;
        }

        use crate::drpc::ApiVersion;
        use crate::rpc::VersionInfo;

        /// Every API version, oldest first, with the RPCs it adds.
        pub const VERSIONS: &[VersionInfo] = &[#(#rows),*];

        /// The newest API version this crate speaks (what `connect_rpc` dials).
        pub const CURRENT_VERSION: ApiVersion = ApiVersion::new(#major, #minor);
    })
}
