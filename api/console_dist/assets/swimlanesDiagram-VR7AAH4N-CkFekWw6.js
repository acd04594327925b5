import{r as e,t}from"./chunk-SHT3W25Y-Bv6o3ZX_.js";import"./chunk-POPQ4Y6H-D1oQ2lRf.js";import"./mermaid.core-WQpEWD4n.js";import"./chunk-F27PBJKO-DD0bH6c5.js";import"./chunk-L3NEJ4N5-d0RdWqgC.js";import"./chunk-OSK3NFVY-D058htO7.js";import"./chunk-GVQU2GXP-vRNS_dXd.js";import"./chunk-4HAMMTFA-BGkYp38T.js";import"./chunk-P2QGCYS3-CRpiowj-.js";import"./chunk-GMAD6QVW-jkC9Xvcu.js";import"./chunk-PWAF6VOD-l-QG1T7T.js";import"./chunk-75Z2AOVW-CZSawUPN.js";import"./chunk-DU6HZSFF-BxzablHA.js";import"./d3-selection-DgbDCtlK.js";import{n}from"./chunk-Y2CYZVJY-DsF7k-Jl.js";var r=t({defaultLayout:`swimlane`,styles:n(t=>`${e(t)}
  .swimlane.cluster rect {
    stroke: ${t.clusterBorder} !important;
  }
  [data-look="neo"].cluster rect {
    filter: none;
  }
`,`getStyles`)});export{r as diagram};